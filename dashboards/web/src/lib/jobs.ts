// Jobs: a command fanned out by label selector, in batches. Pure helpers for the Jobs page.

import type { Agent } from "./types";

export interface Job {
  id: string;
  name: string;
  args: Record<string, unknown>;
  state: "running" | "done" | "stopped";
  total: number;
  agents: string[];
  counts: Record<string, number>;
  failures: number;
  batch_size: number;
  max_failures: number;
  timeout_s: number | null;
  actor: string;
  created_at: number;
  finished_at: number | null;
  stopped_reason: string | null;
  redacted?: boolean;
}

export type Selector = { ok: true; labels: Record<string, string> } | { ok: false; error: string };

/** "role=web, site=paris" → {role: "web", site: "paris"}; empty text selects every agent. */
export function parseSelector(text: string): Selector {
  const labels: Record<string, string> = {};
  for (const raw of text.split(",")) {
    const part = raw.trim();
    if (!part) continue;
    const eq = part.indexOf("=");
    if (eq <= 0) return { ok: false, error: `"${part}" is not key=value` };
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!key) return { ok: false, error: `"${part}" has no key` };
    if (key in labels && labels[key] !== value) {
      return { ok: false, error: `${key} is given twice with different values` };
    }
    labels[key] = value;
  }
  return { ok: true, labels };
}

/** The agents a selector picks, as the API's select_agents does (every pair must hold). */
export function selectAgents(agents: Agent[], labels: Record<string, string>): Agent[] {
  return agents
    .filter((a) => Object.entries(labels).every(([k, v]) => (a.labels ?? {})[k] === v))
    .sort((a, b) => a.id.localeCompare(b.id));
}

const FINAL = ["ok", "failed", "rejected", "expired", "timed_out"];

/** Progress of a job: commands finished, how many of them failed, and the share done (0-1). */
export function jobProgress(job: Pick<Job, "counts" | "total">): { finished: number; failed: number; share: number } {
  let finished = 0;
  let failed = 0;
  for (const [state, n] of Object.entries(job.counts)) {
    if (!FINAL.includes(state)) continue;
    finished += n;
    if (state !== "ok") failed += n;
  }
  const share = job.total > 0 ? Math.min(1, finished / job.total) : 0;
  return { finished, failed, share };
}

/** One line for a job's state: "running: 3 of 10 done", "done: 10 ok", "stopped: aborted by user:ann". */
export function jobSummary(job: Job): string {
  const { finished, failed } = jobProgress(job);
  if (job.state === "running") return `running: ${finished} of ${job.total} done${failed ? `, ${failed} failed` : ""}`;
  if (job.state === "done") return `done: ${finished - failed} ok${failed ? `, ${failed} failed` : ""}`;
  return `stopped: ${job.stopped_reason ?? "stopped"}`;
}

export interface JobForm {
  name: string;
  selector: string;
  batchSize: string;
  maxFailures: string;
  timeout: string;
}

export type JobRequest =
  | { ok: true; body: { name: string; labels: Record<string, string>; batch_size: number; max_failures: number; timeout?: number } }
  | { ok: false; error: string };

function whole(text: string, what: string, min: number, max: number): number | string {
  const n = Number(text.trim());
  if (!text.trim() || !Number.isInteger(n) || n < min || n > max) return `${what} is a whole number from ${min} to ${max}`;
  return n;
}

/** The POST /jobs body from the form, or what is wrong with it (a sentence). */
export function jobRequest(form: JobForm): JobRequest {
  if (!form.name) return { ok: false, error: "Choose a command." };
  const selector = parseSelector(form.selector);
  if (!selector.ok) return { ok: false, error: `Label selector: ${selector.error}.` };
  const batch = whole(form.batchSize, "Batch size", 1, 1000);
  if (typeof batch === "string") return { ok: false, error: `${batch}.` };
  const failures = whole(form.maxFailures, "Abort threshold", 0, 100000);
  if (typeof failures === "string") return { ok: false, error: `${failures}.` };
  const body: { name: string; labels: Record<string, string>; batch_size: number; max_failures: number; timeout?: number } = {
    name: form.name, labels: selector.labels, batch_size: batch, max_failures: failures,
  };
  if (form.timeout.trim()) {
    const t = Number(form.timeout.trim());
    if (!Number.isFinite(t) || t <= 0 || t > 3600) return { ok: false, error: "Timeout is a number of seconds up to 3600." };
    body.timeout = t;
  }
  return { ok: true, body };
}
