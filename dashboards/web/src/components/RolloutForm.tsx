import { useEffect, useMemo, useState } from "react";
import { useApp } from "../context";
import { api, errorText, post } from "../lib/api";
import { parseSelector, selectAgents, type Job } from "../lib/jobs";
import { releaseVersions, rolloutRequest, type RolloutForm as Form } from "../lib/rollout";
import { ConfirmDialog, type ConfirmRequest } from "./ConfirmDialog";

const INPUT = "rounded border border-slate-700 bg-slate-900 px-2 py-1.5 text-sm text-slate-100";

/** Start a fleet rollout of a release (POST /jobs/update): the versions come from the
 * release store (GET /releases); a canary, batches and an abort threshold. */
export function RolloutForm({ onStarted }: { onStarted: () => void }) {
  const { fleet } = useApp();
  const [versions, setVersions] = useState<string[] | null>(null);
  const [form, setForm] = useState<Form>({ version: "", selector: "", canary: "1", batchSize: "10", maxFailures: "0", healthTimeout: "180", rollback: true });
  const [note, setNote] = useState("");
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);

  useEffect(() => {
    api<unknown>("/releases")
      .then((body) => {
        const found = releaseVersions(body);
        setVersions(found);
        setForm((f) => (f.version || !found[0] ? f : { ...f, version: found[0] }));
      })
      .catch(() => setVersions([])); // no release store: the version is typed in
  }, []);

  const selector = parseSelector(form.selector);
  const picked = useMemo(() => (selector.ok ? selectAgents(Object.values(fleet.agents), selector.labels) : []), [fleet.agents, form.selector]);
  const behind = picked.filter((a) => a.version !== form.version.trim()).length;

  async function start() {
    const request = rolloutRequest(form);
    if (!request.ok) return setNote(request.error);
    try {
      const job = await post<Job>("/jobs/update", request.body);
      setNote(`Started the update to ${request.body.version} on ${job.total} agent${job.total === 1 ? "" : "s"}.`);
      onStarted();
    } catch (exc) {
      setNote(errorText(exc));
    }
  }

  const set = (key: keyof Form) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });
  return (
    <form
      data-testid="rollout-form"
      className="grid gap-3 rounded border border-slate-800 p-4 sm:grid-cols-2 lg:grid-cols-3"
      onSubmit={(e) => {
        e.preventDefault();
        const checked = rolloutRequest(form);
        if (!checked.ok) return setNote(checked.error);
        setConfirm({
          title: `Update ${picked.length} agent${picked.length === 1 ? "" : "s"} to ${checked.body.version}?`,
          body: `${behind} not on it yet. ${checked.body.canary ? `Canary: ${checked.body.canary} first, then` : "Then"} batches of ${checked.body.batch_size}; more than ${checked.body.max_failures} failure${checked.body.max_failures === 1 ? "" : "s"} halt it${checked.body.rollback_on_abort ? " and roll back the agents it switched" : ""}.`,
          confirmLabel: "Start rollout",
          danger: true,
          onConfirm: () => void start(),
        });
      }}
    >
      <h2 className="text-sm font-semibold text-slate-100 sm:col-span-2 lg:col-span-3">Roll out a release</h2>
      <label className="flex flex-col gap-1 text-xs text-slate-400">
        Version
        {versions && versions.length > 0 ? (
          <select data-testid="rollout-version" value={form.version} onChange={set("version")} className={INPUT}>
            {versions.map((v) => <option key={v} value={v}>{v}</option>)}
          </select>
        ) : (
          <input data-testid="rollout-version" value={form.version} onChange={set("version")} placeholder={versions === null ? "loading releases…" : "0.2.0"} className={INPUT} />
        )}
      </label>
      <label className="flex flex-col gap-1 text-xs text-slate-400 lg:col-span-2">
        Label selector (key=value, comma separated; empty: every agent)
        <input data-testid="rollout-selector" value={form.selector} onChange={set("selector")} placeholder="role=web" className={INPUT} />
        <span data-testid="rollout-matches" className={selector.ok ? "text-slate-400" : "text-red-400"}>
          {selector.ok ? `${picked.length} agent${picked.length === 1 ? "" : "s"} match, ${behind} not on ${form.version || "it"}` : selector.error}
        </span>
      </label>
      <label className="flex flex-col gap-1 text-xs text-slate-400">
        Canary (agents updated alone first)
        <input data-testid="rollout-canary" inputMode="numeric" value={form.canary} onChange={set("canary")} className={INPUT} />
      </label>
      <label className="flex flex-col gap-1 text-xs text-slate-400">
        Batch size
        <input data-testid="rollout-batch" inputMode="numeric" value={form.batchSize} onChange={set("batchSize")} className={INPUT} />
      </label>
      <label className="flex flex-col gap-1 text-xs text-slate-400">
        Abort after more than N failures
        <input data-testid="rollout-max-failures" inputMode="numeric" value={form.maxFailures} onChange={set("maxFailures")} className={INPUT} />
      </label>
      <label className="flex flex-col gap-1 text-xs text-slate-400">
        Health gate per agent (s)
        <input data-testid="rollout-health-timeout" inputMode="decimal" value={form.healthTimeout} onChange={set("healthTimeout")} className={INPUT} />
      </label>
      <label className="flex items-center gap-2 text-xs text-slate-400 sm:col-span-2">
        <input data-testid="rollout-rollback" type="checkbox" checked={form.rollback} onChange={(e) => setForm({ ...form, rollback: e.target.checked })} />
        On a halt or abort, roll back the agents it switched
      </label>
      <div className="flex items-center gap-3 sm:col-span-2 lg:col-span-3">
        <button type="submit" data-testid="rollout-start" className="min-h-10 rounded bg-sky-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-sky-600">
          Start rollout
        </button>
        {note && <span className="text-sm text-slate-300" data-testid="rollout-note">{note}</span>}
      </div>
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
    </form>
  );
}
