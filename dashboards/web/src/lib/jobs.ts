// Jobs: a command fanned out by label selector, in batches. Pure helpers for the Jobs page.

import { roleAllows } from "./commands";
import type { Rollout } from "./rollout";
import { shellRequest } from "./shell";
import type { Agent } from "./types";

export interface Job {
  id: string;
  /** "update": a fleet rollout (POST /jobs/update), its progress in `rollout`. */
  kind?: "command" | "update";
  rollout?: Rollout | null;
  name: string;
  args: Record<string, unknown>;
  /** failed: a rollout halted by its abort threshold (it may still be rolling back). */
  state: "running" | "done" | "stopped" | "failed";
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
  if (job.rollout) {
    const r = job.rollout;
    const healthy = r.phases.healthy ?? 0;
    const over = job.finished_at !== null ? "" : r.stage === "rolling_back" ? " (rolling back)" : "";
    if (job.state === "running") return `running: ${healthy} of ${job.total} healthy${r.failures ? `, ${r.failures} failed` : ""}`;
    if (job.state === "done") return `done: ${healthy} of ${job.total} healthy`;
    return `${job.state}: ${job.stopped_reason ?? job.state}${over}`;
  }
  const { finished, failed } = jobProgress(job);
  if (job.state === "running") return `running: ${finished} of ${job.total} done${failed ? `, ${failed} failed` : ""}`;
  if (job.state === "done") return `done: ${finished - failed} ok${failed ? `, ${failed} failed` : ""}`;
  return `stopped: ${job.stopped_reason ?? "stopped"}`;
}

/** Every command POST /jobs accepts (all but `terminal`, opened one at a time), with the
 * role the API asks for it (web_api.auth.roles.COMMAND_ROLES) and the argument it needs. */
export const JOB_COMMANDS = [
  { name: "metrics", role: "operator", needs: null },
  { name: "screenshot", role: "operator", needs: null },
  { name: "docker_ps", role: "operator", needs: null },
  { name: "docker_restart", role: "operator", needs: "container" },
  { name: "restart", role: "operator", needs: null },
  { name: "stop", role: "operator", needs: null },
  { name: "shell", role: "admin", needs: "command" },
] as const;

export type JobCommand = (typeof JOB_COMMANDS)[number];

/** The commands a user of `role` may start as a job. */
export function jobCommandsFor(role: string): JobCommand[] {
  return JOB_COMMANDS.filter((c) => roleAllows(role, c.role));
}

/** What a command's form field asks for: "command" (a shell line), "container" or null. */
export function jobNeeds(name: string): JobCommand["needs"] {
  return JOB_COMMANDS.find((c) => c.name === name)?.needs ?? null;
}

/** A job's name with the argument that tells it apart: `shell "uptime"`, `docker_restart web-1`. */
export function jobTitle(job: Pick<Job, "name" | "args" | "redacted" | "rollout">): string {
  if (job.rollout) return `update to ${job.rollout.version}`;
  if (job.redacted) return job.name;
  if (job.name === "shell" && typeof job.args.command === "string") return `shell "${job.args.command}"`;
  if (job.name === "shell" && Array.isArray(job.args.argv)) return `shell ${job.args.argv.map(String).join(" ")}`;
  if (job.name === "docker_restart" && typeof job.args.container === "string") return `docker_restart ${job.args.container}`;
  return job.name;
}

export interface JobForm {
  name: string;
  selector: string;
  batchSize: string;
  maxFailures: string;
  timeout: string;
  /** shell: the line for `/bin/sh -c` and its time limit (s); each agent's allowlist decides. */
  command?: string;
  shellTimeout?: string;
  /** docker_restart: the container's name or id. */
  container?: string;
}

export interface JobBody {
  name: string;
  args: Record<string, unknown>;
  labels: Record<string, string>;
  batch_size: number;
  max_failures: number;
  timeout?: number;
}

export type JobRequest = { ok: true; body: JobBody } | { ok: false; error: string };

function whole(text: string, what: string, min: number, max: number): number | string {
  const n = Number(text.trim());
  if (!text.trim() || !Number.isInteger(n) || n < min || n > max) return `${what} is a whole number from ${min} to ${max}`;
  return n;
}

// Docker's own rule for a container name (DockerRestartArgs.container in arete/commands.py).
const CONTAINER = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** The command's `args` from the form, or what is missing (a sentence). */
function jobArgs(form: JobForm): { ok: true; args: Record<string, unknown> } | { ok: false; error: string } {
  const needs = jobNeeds(form.name);
  if (needs === "command") {
    const shell = shellRequest(form.command ?? "", form.shellTimeout ?? "");
    return shell.ok ? { ok: true, args: shell.body.args } : { ok: false, error: shell.error };
  }
  if (needs === "container") {
    const container = (form.container ?? "").trim();
    if (!container) return { ok: false, error: "Name the container to restart." };
    if (!CONTAINER.test(container)) {
      return { ok: false, error: "A container name is letters, digits, '_', '.' and '-' (up to 128), starting with a letter or digit." };
    }
    return { ok: true, args: { container } };
  }
  return { ok: true, args: {} };
}

/** The POST /jobs body from the form, or what is wrong with it (a sentence). */
export function jobRequest(form: JobForm): JobRequest {
  if (!JOB_COMMANDS.some((c) => c.name === form.name)) return { ok: false, error: "Choose a command." };
  const selector = parseSelector(form.selector);
  if (!selector.ok) return { ok: false, error: `Label selector: ${selector.error}.` };
  const args = jobArgs(form);
  if (!args.ok) return { ok: false, error: args.error };
  const batch = whole(form.batchSize, "Batch size", 1, 1000);
  if (typeof batch === "string") return { ok: false, error: `${batch}.` };
  const failures = whole(form.maxFailures, "Abort threshold", 0, 100000);
  if (typeof failures === "string") return { ok: false, error: `${failures}.` };
  const body: JobBody = { name: form.name, args: args.args, labels: selector.labels, batch_size: batch, max_failures: failures };
  if (form.timeout.trim()) {
    const t = Number(form.timeout.trim());
    if (!Number.isFinite(t) || t <= 0 || t > 3600) return { ok: false, error: "Timeout is a number of seconds up to 3600." };
    body.timeout = t;
  }
  return { ok: true, body };
}
