// Alert rules (GET /alerts/rules), silence durations and notifier health. Pure.

export interface Rule {
  name: string;
  kind: "state" | "metric" | "condition";
  builtin: boolean;
  enabled: boolean;
  severity: string;
  for_s: number;
  clear_for_s: number;
  field: string | null;
  op: string | null;
  threshold: number | null;
  labels: Record<string, string>;
  states: string[];
  scope: "agent" | "maestro";
  summary: string;
}

export interface Notifier {
  channel: string;
  kind: string;
  status: "ok" | "retrying" | "failing";
  queued: number;
  oldest_queued_at: number | null;
  last_sent_at: number | null;
  last_failed_at: number | null;
  last_error: string | null;
  sent: number;
  failed: number;
  retried: number;
}

export interface Notifiers {
  configured: boolean;
  channels: Notifier[];
}

const UNITS: Record<string, string> = { cpu: "%", mem: "%", disk: "%", swap: "%" };

/** When a rule fires, in words: "cpu > 90 % for 5 min", "agent offline", "reported by the maestro (over 10)". */
export function ruleCondition(rule: Rule): string {
  const wait = rule.for_s > 0 ? ` for ${shortDuration(rule.for_s)}` : "";
  if (rule.kind === "metric" && rule.field) {
    const unit = UNITS[rule.field] ? ` ${UNITS[rule.field]}` : "";
    return `${rule.field} ${rule.op ?? ""} ${rule.threshold ?? "?"}${unit}${wait}`;
  }
  if (rule.kind === "state") return `agent ${rule.states.join(" or ") || "?"}${wait}`;
  const limit = rule.threshold != null ? ` (threshold ${rule.threshold})` : "";
  return `reported by the maestro${limit}${wait}`;
}

/** Sort: enabled first, then built-ins before custom rules, then by name. */
export function sortRules(rules: Rule[]): Rule[] {
  return [...rules].sort(
    (a, b) => Number(b.enabled) - Number(a.enabled) || Number(b.builtin) - Number(a.builtin) || a.name.localeCompare(b.name),
  );
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, min: 60, h: 3600, d: 86400 };
export const MAX_SILENCE_S = 30 * 86400;

/** "90m", "2h", "1h30m", "1d", "45 s" → seconds; null if not a duration of 1 s to 30 days. */
export function parseDuration(text: string): number | null {
  const t = text.trim().toLowerCase().replace(/\s+/g, "");
  if (!t) return null;
  if (/^\d+(\.\d+)?$/.test(t)) {
    const minutes = Number(t) * 60; // a bare number is minutes
    return minutes >= 1 && minutes <= MAX_SILENCE_S ? minutes : null;
  }
  const re = /(\d+(?:\.\d+)?)(min|s|m|h|d)/g;
  let total = 0;
  let used = 0;
  for (const m of t.matchAll(re)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!;
    used += m[0].length;
  }
  if (used !== t.length || total < 1 || total > MAX_SILENCE_S) return null;
  return total;
}

export type SilenceRequest =
  | { ok: true; body: { agent?: string; rule?: string; duration_s: number; reason: string } }
  | { ok: false; error: string };

/** The POST /silences body from the form, or what is wrong (a sentence). */
export function silenceRequest(form: { agent: string; rule: string; duration: string; reason: string }): SilenceRequest {
  const agent = form.agent.trim();
  const rule = form.rule.trim();
  if (!agent && !rule) return { ok: false, error: "Choose an agent, a rule or both." };
  const duration = parseDuration(form.duration);
  if (duration == null) return { ok: false, error: "Duration: e.g. 30m, 2h, 1d12h (1 s to 30 days)." };
  const body: { agent?: string; rule?: string; duration_s: number; reason: string } = { duration_s: duration, reason: form.reason.trim() };
  if (agent) body.agent = agent;
  if (rule) body.rule = rule;
  return { ok: true, body };
}

/** A notifier's state in words for its card. */
export function notifierSentence(n: Notifier, nowS: number, ago: (ts: number | null, now: number) => string): string {
  if (n.status === "retrying") return `Retrying: ${n.queued} waiting, the oldest queued ${ago(n.oldest_queued_at, nowS)}.`;
  if (n.status === "failing") return `Failing: the last notification failed ${ago(n.last_failed_at, nowS)}.`;
  if (n.last_sent_at == null) return "Ready: nothing sent yet.";
  return `Working: last delivery ${ago(n.last_sent_at, nowS)}.`;
}

/** A silence's length, short: 3600 → "1 h", 5400 → "1 h 30 min", 129600 → "1 d 12 h", 45 → "45 s". */
export function shortDuration(seconds: number): string {
  const s = Math.round(seconds);
  const parts: string[] = [];
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (d) parts.push(`${d} d`);
  if (h) parts.push(`${h} h`);
  if (m) parts.push(`${m} min`);
  if (rest || parts.length === 0) parts.push(`${rest} s`);
  return parts.join(" ");
}

/** A rule's alert summary with its placeholders in words: "{agent}: CPU at {value}% (over {threshold}%)"
 * → "<agent>: CPU at <value>% (over 90%)". Empty when the rule has no template. */
export function ruleSummary(rule: Rule): string {
  const words: Record<string, string> = {
    agent: "<agent>",
    rule: rule.name,
    field: rule.field ?? "",
    op: rule.op ?? "",
    threshold: rule.threshold == null ? "?" : String(rule.threshold),
    value: "<value>",
    detail: "<detail>",
  };
  return rule.summary.replace(/\{(\w+)\}/g, (all, key: string) => words[key] ?? all);
}
