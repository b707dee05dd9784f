import { useCallback, useEffect, useMemo, useState } from "react";
import { ConfirmDialog, type ConfirmRequest } from "../components/ConfirmDialog";
import { JobResults } from "../components/JobResults";
import { RolloutForm } from "../components/RolloutForm";
import { RolloutProgress } from "../components/RolloutProgress";
import { useApp, useNow } from "../context";
import { errorText, get, post } from "../lib/api";
import { roleAllows } from "../lib/commands";
import { formatAgo, formatTime } from "../lib/format";
import { jobCommandsFor, jobNeeds, jobProgress, jobRequest, jobSummary, jobTitle, parseSelector, selectAgents, type Job, type JobForm } from "../lib/jobs";

const INPUT = "rounded border border-slate-700 bg-slate-900 px-2 py-1.5 text-sm text-slate-100";

/** Jobs: one command to every agent a label selector picks, in batches, with an abort threshold. */
export function JobsPage() {
  const { me, fleet } = useApp();
  const [jobs, setJobs] = useState<Job[] | null>(null);
  const [form, setForm] = useState<JobForm>({
    name: "metrics", selector: "", batchSize: "10", maxFailures: "0", timeout: "", command: "", shellTimeout: "30", container: "",
  });
  const [note, setNote] = useState("");
  const [error, setError] = useState("");
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [shown, setShown] = useState<string | null>(null); // the job whose answers are open
  const now = useNow(1000);
  const canRun = roleAllows(me.role, "operator");
  const commands = jobCommandsFor(me.role);
  const needs = jobNeeds(form.name);

  const load = useCallback(() => {
    get<Job[]>("/jobs")
      .then((j) => {
        setJobs(j);
        setError("");
      })
      .catch((exc: unknown) => setError(errorText(exc)));
  }, []);

  // A halted rollout still rolls back until finished_at: keep it live until then.
  const running = jobs?.some((j) => j.state === "running" || j.finished_at === null) ?? false;
  useEffect(() => {
    load();
    const every = setInterval(load, running ? 1000 : 5000); // live progress while one runs
    return () => clearInterval(every);
  }, [load, running]);

  const selector = parseSelector(form.selector);
  const picked = useMemo(
    () => (selector.ok ? selectAgents(Object.values(fleet.agents), selector.labels) : []),
    [fleet.agents, form.selector],
  );

  async function start() {
    const request = jobRequest(form);
    if (!request.ok) {
      setNote(request.error);
      return;
    }
    try {
      const job = await post<Job>("/jobs", request.body);
      setNote(`Started ${job.name} on ${job.total} agent${job.total === 1 ? "" : "s"}.`);
      load();
    } catch (exc) {
      setNote(errorText(exc));
    }
  }

  async function abort(job: Job) {
    try {
      await post(`/jobs/${encodeURIComponent(job.id)}/abort`);
      setNote(`Aborted ${job.name} (${job.id}).`);
    } catch (exc) {
      setNote(errorText(exc));
    }
    load();
  }

  const set = (key: keyof JobForm) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });
  return (
    <div className="space-y-6">
      <h1 className="text-xl font-semibold text-slate-100">Jobs</h1>
      {canRun && (
        <form
          data-testid="job-form"
          className="grid gap-3 rounded border border-slate-800 p-4 sm:grid-cols-2 lg:grid-cols-3"
          onSubmit={(e) => {
            e.preventDefault();
            const checked = jobRequest(form);
            if (!checked.ok) {
              setNote(checked.error);
              return;
            }
            setConfirm({
              title: `Run ${form.name}${needs === "command" ? ` "${checked.body.args.command as string}"` : needs === "container" ? ` of ${checked.body.args.container as string}` : ""} on ${picked.length} agent${picked.length === 1 ? "" : "s"}?`,
              body: picked.length ? `Agents: ${picked.slice(0, 20).map((a) => a.id).join(", ")}${picked.length > 20 ? "…" : ""}` : "No known agent matches yet; the server chooses at start.",
              confirmLabel: "Start job",
              danger: form.name !== "metrics" && form.name !== "screenshot" && form.name !== "docker_ps",
              onConfirm: () => void start(),
            });
          }}
        >
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Command
            <select data-testid="job-command" value={form.name} onChange={set("name")} className={INPUT}>
              {commands.map((c) => <option key={c.name} value={c.name}>{c.name}</option>)}
            </select>
          </label>
          {needs === "command" && (
            <>
              <label className="flex flex-col gap-1 text-xs text-slate-400 sm:col-span-2">
                Command line (run by /bin/sh -c; each agent's shell allowlist decides)
                <input data-testid="job-shell-command" value={form.command} onChange={set("command")} placeholder="uptime" spellCheck={false} className={`${INPUT} font-mono`} />
              </label>
              <label className="flex flex-col gap-1 text-xs text-slate-400">
                Time limit of the command (s)
                <input data-testid="job-shell-timeout" inputMode="decimal" value={form.shellTimeout} onChange={set("shellTimeout")} className={INPUT} />
              </label>
            </>
          )}
          {needs === "container" && (
            <label className="flex flex-col gap-1 text-xs text-slate-400 sm:col-span-2">
              Container (name or id, on every agent picked)
              <input data-testid="job-container" value={form.container} onChange={set("container")} placeholder="web-1" spellCheck={false} className={INPUT} />
            </label>
          )}
          <label className="flex flex-col gap-1 text-xs text-slate-400 lg:col-span-2">
            Label selector (key=value, comma separated; empty: every agent)
            <input data-testid="job-selector" value={form.selector} onChange={set("selector")} placeholder="role=web, site=paris" className={INPUT} />
            <span data-testid="job-matches" className={selector.ok ? "text-slate-400" : "text-red-400"}>
              {selector.ok ? `${picked.length} agent${picked.length === 1 ? "" : "s"} match` : selector.error}
            </span>
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Batch size
            <input data-testid="job-batch" inputMode="numeric" value={form.batchSize} onChange={set("batchSize")} className={INPUT} />
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Abort after more than N failures
            <input data-testid="job-max-failures" inputMode="numeric" value={form.maxFailures} onChange={set("maxFailures")} className={INPUT} />
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Timeout per command (s, optional)
            <input data-testid="job-timeout" inputMode="decimal" value={form.timeout} onChange={set("timeout")} className={INPUT} />
          </label>
          <div className="flex items-center gap-3 sm:col-span-2 lg:col-span-3">
            <button type="submit" data-testid="job-start" className="min-h-10 rounded bg-sky-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-sky-600">
              Start job
            </button>
            {note && <span className="text-sm text-slate-300" data-testid="job-note">{note}</span>}
          </div>
        </form>
      )}
      {canRun && <RolloutForm onStarted={load} />}
      {error && <p className="text-sm text-red-400" data-testid="jobs-error">{error}</p>}
      {jobs === null ? (
        <p className="text-slate-400">Loading…</p>
      ) : jobs.length === 0 ? (
        <p className="text-slate-400" data-testid="jobs-empty">No jobs since the web API started.</p>
      ) : (
        <ul className="space-y-3" data-testid="jobs-list">
          {jobs.map((job) => {
            const p = jobProgress(job);
            return (
              <li key={job.id} className="rounded border border-slate-800 p-3" data-testid={`job-${job.id}`} data-state={job.state}>
                <div className="flex flex-wrap items-center gap-x-3 gap-y-1 text-sm">
                  <span className="break-all font-medium text-slate-100" data-testid="job-title">{jobTitle(job)}</span>
                  <span className={job.state === "running" ? "text-sky-300" : job.state === "done" ? "text-emerald-400" : job.state === "failed" ? "text-red-400" : "text-amber-300"} data-testid="job-summary">
                    {jobSummary(job)}
                  </span>
                  <span className="text-xs text-slate-500" title={formatTime(job.created_at)}>
                    {job.id} · by {job.actor} · {formatAgo(job.created_at, now)} · batches of {job.batch_size}, abort after {job.max_failures} failure{job.max_failures === 1 ? "" : "s"}
                  </span>
                  {canRun && job.state === "running" && (
                    <button
                      type="button"
                      data-testid={`job-abort-${job.id}`}
                      onClick={() => void abort(job)}
                      className="ml-auto min-h-10 rounded bg-red-800 px-3 py-1 text-xs text-white hover:bg-red-700"
                    >
                      Abort
                    </button>
                  )}
                </div>
                {job.rollout ? (
                  <RolloutProgress job={job} />
                ) : (
                  <div className="mt-2 h-2 overflow-hidden rounded bg-slate-800" role="progressbar" aria-valuemin={0} aria-valuemax={job.total} aria-valuenow={p.finished}>
                    <div className={`h-full ${p.failed ? "bg-amber-500" : "bg-emerald-500"}`} style={{ width: `${Math.round(p.share * 100)}%` }} />
                  </div>
                )}
                <div className="mt-1 flex flex-wrap items-center gap-x-3 text-xs text-slate-500">
                  <span data-testid="job-counts">
                    {p.finished} of {job.total} finished{p.failed ? `, ${p.failed} failed` : ""} · {job.agents.slice(0, 10).join(", ")}{job.agents.length > 10 ? "…" : ""}
                  </span>
                  <button
                    type="button"
                    data-testid={`job-answers-${job.id}`}
                    aria-expanded={shown === job.id}
                    onClick={() => setShown(shown === job.id ? null : job.id)}
                    className="ml-auto min-h-10 rounded border border-slate-700 px-3 py-1 text-xs text-slate-300 hover:bg-slate-800"
                  >
                    {shown === job.id ? "Hide answers" : "Each agent's answer"}
                  </button>
                </div>
                {shown === job.id && <JobResults job={job} />}
              </li>
            );
          })}
        </ul>
      )}
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
    </div>
  );
}
