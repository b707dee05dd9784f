// Fleet rollouts (jobs of kind "update", POST /jobs/update): pure helpers for the Jobs page.

import { parseSelector } from "./jobs";

export type RolloutPhase =
  | "waiting"
  | "sent"
  | "installing"
  | "switched"
  | "healthy"
  | "failed"
  | "rolling_back"
  | "rolled_back";

export interface RolloutAgent {
  id: string;
  /** 0 is the canary; null: it needed no command (already on the version). */
  batch: number | null;
  phase: RolloutPhase;
  reason: string | null;
  from_version: string | null;
  version: string | null;
  command_id: string | null;
}

export interface Rollout {
  version: string;
  stage: "canary" | "batches" | "settling" | "rolling_back" | "ended";
  batch: number;
  batches: number;
  canary: number;
  health_timeout_s: number;
  rollback_on_abort: boolean;
  phases: Partial<Record<RolloutPhase, number>>;
  failures: number;
  stop_reason: string | null;
  /** Only in GET /jobs/{id}. */
  agents?: RolloutAgent[] | null;
}

/** The order phases are listed in, and their colours. */
export const PHASES: RolloutPhase[] = ["healthy", "switched", "installing", "sent", "waiting", "rolling_back", "rolled_back", "failed"];

export function phaseClass(phase: string): string {
  switch (phase) {
    case "healthy":
      return "bg-emerald-600 text-white";
    case "switched":
    case "installing":
    case "sent":
      return "bg-sky-700 text-white";
    case "rolling_back":
      return "bg-amber-500 text-slate-950";
    case "rolled_back":
    case "failed":
      return "bg-red-700 text-white";
    default:
      return "bg-slate-700 text-slate-200";
  }
}

/** "healthy 3 · installing 1 · waiting 6" in PHASES order. */
export function phaseCounts(rollout: Pick<Rollout, "phases">): string {
  return PHASES.filter((p) => rollout.phases[p]).map((p) => `${p.replace("_", " ")} ${rollout.phases[p]}`).join(" · ");
}

/** Where the rollout is, in words: "canary", "batch 2 of 5", "rolling back", "ended". */
export function stageText(rollout: Rollout): string {
  switch (rollout.stage) {
    case "canary":
      return "canary";
    case "batches":
      return `batch ${rollout.batch} of ${Math.max(0, rollout.batches - 1)}`;
    case "settling":
      return "halted: the batch under way settles";
    case "rolling_back":
      return "rolling back what it switched";
    default:
      return "ended";
  }
}

/** Share of agents that ended healthy, and of those that failed (0-1 each). */
export function rolloutShares(rollout: Pick<Rollout, "phases">, total: number): { healthy: number; failed: number } {
  if (total <= 0) return { healthy: 0, failed: 0 };
  const healthy = rollout.phases.healthy ?? 0;
  const failed = (rollout.phases.failed ?? 0) + (rollout.phases.rolled_back ?? 0);
  return { healthy: Math.min(1, healthy / total), failed: Math.min(1, failed / total) };
}

export interface BatchView {
  key: string;
  label: string;
  agents: RolloutAgent[];
}

/** Agents grouped as the rollout sends them: already there, canary, batch 1, batch 2 ... */
export function rolloutBatches(rollout: Rollout): BatchView[] {
  const groups = new Map<number, RolloutAgent[]>();
  for (const agent of rollout.agents ?? []) {
    const key = agent.batch ?? -1;
    groups.set(key, [...(groups.get(key) ?? []), agent]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => a - b)
    .map(([batch, agents]) => ({
      key: String(batch),
      label: batch < 0 ? "already on the version" : batch === 0 && rollout.canary > 0 ? "canary" : `batch ${rollout.canary > 0 ? batch : batch + 1}`,
      agents,
    }));
}

export interface RolloutForm {
  version: string;
  selector: string;
  canary: string;
  batchSize: string;
  maxFailures: string;
  healthTimeout: string;
  rollback: boolean;
}

export interface RolloutBody {
  version: string;
  labels: Record<string, string>;
  canary: number;
  batch_size: number;
  max_failures: number;
  health_timeout_s: number;
  rollback_on_abort: boolean;
}

const VERSION = /^[0-9]{1,6}(\.[0-9]{1,6}){0,3}$/;

function whole(text: string, what: string, min: number, max: number): number | string {
  const n = Number(text.trim());
  if (!text.trim() || !Number.isInteger(n) || n < min || n > max) return `${what} is a whole number from ${min} to ${max}.`;
  return n;
}

/** The POST /jobs/update body from the form, or what is wrong with it (a sentence). */
export function rolloutRequest(form: RolloutForm): { ok: true; body: RolloutBody } | { ok: false; error: string } {
  const version = form.version.trim();
  if (!VERSION.test(version)) return { ok: false, error: "Choose a release version (like 0.2.0)." };
  const selector = parseSelector(form.selector);
  if (!selector.ok) return { ok: false, error: `Label selector: ${selector.error}.` };
  const canary = whole(form.canary, "Canary", 0, 1000);
  if (typeof canary === "string") return { ok: false, error: canary };
  const batch = whole(form.batchSize, "Batch size", 1, 1000);
  if (typeof batch === "string") return { ok: false, error: batch };
  const failures = whole(form.maxFailures, "Abort threshold", 0, 100000);
  if (typeof failures === "string") return { ok: false, error: failures };
  const timeout = Number(form.healthTimeout.trim());
  if (!form.healthTimeout.trim() || !Number.isFinite(timeout) || timeout < 10 || timeout > 3600) {
    return { ok: false, error: "Health timeout is a number of seconds from 10 to 3600." };
  }
  return {
    ok: true,
    body: {
      version,
      labels: selector.labels,
      canary,
      batch_size: batch,
      max_failures: failures,
      health_timeout_s: timeout,
      rollback_on_abort: form.rollback,
    },
  };
}

/** GET /releases → the versions to offer, newest first ([] if there is no store). */
export function releaseVersions(body: unknown): string[] {
  if (typeof body !== "object" || body === null) return [];
  const items = (body as { items?: unknown }).items;
  if (!Array.isArray(items)) return [];
  return items.map((i) => (i as { version?: unknown }).version).filter((v): v is string => typeof v === "string");
}
