import { useEffect, useState } from "react";
import { errorText, get } from "../lib/api";
import type { Job } from "../lib/jobs";
import { phaseClass, phaseCounts, rolloutBatches, rolloutShares, stageText } from "../lib/rollout";

/** A rollout's live progress: stage, a bar of healthy and failed agents, and every agent's
 * phase batch by batch (GET /jobs/{id} each second until the rollout, rollback included, is over). */
export function RolloutProgress({ job }: { job: Job }) {
  const [detail, setDetail] = useState<Job | null>(null);
  const [error, setError] = useState("");
  const over = (detail ?? job).finished_at !== null;

  useEffect(() => {
    let live = true;
    const load = () =>
      get<Job>(`/jobs/${encodeURIComponent(job.id)}`)
        .then((j) => {
          if (!live) return;
          setDetail(j);
          setError("");
        })
        .catch((exc: unknown) => live && setError(errorText(exc)));
    void load();
    if (over) return () => void (live = false);
    const every = setInterval(() => void load(), 1000);
    return () => {
      live = false;
      clearInterval(every);
    };
  }, [job.id, over]);

  const shown = detail ?? job;
  const rollout = shown.rollout;
  if (!rollout) return null;
  const shares = rolloutShares(rollout, shown.total);
  return (
    <div className="mt-2 space-y-2" data-testid={`rollout-${job.id}`} data-stage={rollout.stage}>
      <div className="flex h-2 overflow-hidden rounded bg-slate-800" role="progressbar" aria-valuemin={0} aria-valuemax={shown.total} aria-valuenow={rollout.phases.healthy ?? 0}>
        <div className="h-full bg-emerald-500" style={{ width: `${Math.round(shares.healthy * 100)}%` }} />
        <div className="h-full bg-red-600" style={{ width: `${Math.round(shares.failed * 100)}%` }} />
      </div>
      <div className="flex flex-wrap gap-x-3 text-xs text-slate-400">
        <span data-testid="rollout-stage">{stageText(rollout)}</span>
        <span data-testid="rollout-phases">{phaseCounts(rollout)}</span>
        <span>
          canary {rollout.canary}, batches of {shown.batch_size}, health gate {rollout.health_timeout_s} s, abort after {shown.max_failures} failure
          {shown.max_failures === 1 ? "" : "s"}
          {rollout.rollback_on_abort ? ", then roll back" : ", no rollback"}
        </span>
      </div>
      {error && <p className="text-xs text-red-400">{error}</p>}
      <ol className="space-y-1" data-testid="rollout-batches">
        {rolloutBatches(rollout).map((b) => (
          <li key={b.key} className="flex flex-wrap items-center gap-1 text-xs" data-testid={`rollout-batch-${b.key}`}>
            <span className="w-40 shrink-0 text-slate-400">{b.label}</span>
            {b.agents.map((a) => (
              <span
                key={a.id}
                className={`rounded px-1.5 py-0.5 ${phaseClass(a.phase)}`}
                title={[a.phase, a.reason, a.version ? `runs ${a.version}` : ""].filter(Boolean).join(" · ")}
                data-testid={`rollout-agent-${a.id}`}
                data-phase={a.phase}
              >
                {a.id}: {a.phase.replace("_", " ")}
              </span>
            ))}
          </li>
        ))}
      </ol>
      {(rollout.agents ?? [])
        .filter((a) => a.reason && (a.phase === "failed" || a.phase === "rolled_back"))
        .slice(0, 20)
        .map((a) => (
          <p key={a.id} className="break-words text-xs text-red-300" data-testid={`rollout-reason-${a.id}`}>
            {a.id}: {a.reason}
          </p>
        ))}
    </div>
  );
}
