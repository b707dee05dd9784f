// History ranges of the agent page: presets, custom from/to and zoom, kept in the hash
// query so a view can be shared; and the query of GET /agents/{id}/metrics. Pure.

export type RangeKey = "5m" | "15m" | "1h" | "6h" | "24h" | "7d" | "30d";

export interface RangeSpec {
  key: RangeKey;
  label: string;
  seconds: number;
  step: number; // bucket width in seconds: a few hundred points per chart
}

export const RANGES: readonly RangeSpec[] = [
  { key: "5m", label: "5 min", seconds: 300, step: 1 },
  { key: "15m", label: "15 min", seconds: 15 * 60, step: 5 },
  { key: "1h", label: "1 h", seconds: 3600, step: 15 },
  { key: "6h", label: "6 h", seconds: 6 * 3600, step: 60 },
  { key: "24h", label: "24 h", seconds: 86_400, step: 300 },
  { key: "7d", label: "7 d", seconds: 7 * 86_400, step: 3600 },
  { key: "30d", label: "30 d", seconds: 30 * 86_400, step: 7200 },
];

export const DEFAULT_RANGE: RangeKey = "1h";
/** The API refuses wider windows (400 days); zooming in stops at a minute. */
export const MAX_WINDOW_S = 400 * 86_400;
export const MIN_WINDOW_S = 60;

export function rangeSpec(key: string): RangeSpec {
  return RANGES.find((r) => r.key === key) ?? RANGES.find((r) => r.key === "15m")!;
}

/** How often a chart of this range is reloaded: about once a bucket, 10 s to 1 min. */
export function historyRefreshMs(key: string): number {
  return Math.min(60, Math.max(10, rangeSpec(key).step)) * 1000;
}

export interface HistoryQuery {
  from: number;
  to: number;
  step: number;
}

/** The window ending now, its edges on step boundaries so buckets line up between reloads. */
export function rangeToQuery(key: string, nowS: number): HistoryQuery {
  const spec = rangeSpec(key);
  const to = Math.ceil(nowS / spec.step) * spec.step;
  return { from: to - spec.seconds, to, step: spec.step };
}

const STEPS = [1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400];

/** The smallest usual bucket width that keeps a window of `seconds` under ~400 points. */
export function stepFor(seconds: number): number {
  return STEPS.find((s) => seconds / s <= 400) ?? 86_400;
}

/** A preset that follows now, or a fixed window (custom from/to, or a zoom). */
export type HistoryView = { range: RangeKey } | { from: number; to: number };

export function isFixed(view: HistoryView): view is { from: number; to: number } {
  return "from" in view;
}

/** A fixed window, widened to a minute and clamped to what the API serves; null if unusable. */
export function fixedView(from: number, to: number): HistoryView | null {
  if (!Number.isFinite(from) || !Number.isFinite(to) || to <= from || from < 0) return null;
  let f = Math.floor(from);
  let t = Math.ceil(to);
  if (t - f < MIN_WINDOW_S) {
    const mid = (f + t) / 2;
    f = Math.floor(mid - MIN_WINDOW_S / 2);
    t = f + MIN_WINDOW_S;
  }
  if (t - f > MAX_WINDOW_S) f = t - MAX_WINDOW_S;
  return { from: f, to: t };
}

/** The view in the hash query (`range=1h` or `from=..&to=..`), the default when absent or bad. */
export function parseView(query: string): HistoryView {
  const params = new URLSearchParams(query);
  const from = params.get("from");
  const to = params.get("to");
  if (from !== null && to !== null && from.trim() && to.trim()) {
    const fixed = fixedView(Number(from), Number(to));
    if (fixed) return fixed;
  }
  const range = params.get("range");
  return { range: RANGES.some((r) => r.key === range) ? (range as RangeKey) : DEFAULT_RANGE };
}

/** The hash query of a view (see parseView). */
export function viewParams(view: HistoryView): string {
  return isFixed(view) ? `from=${view.from}&to=${view.to}` : `range=${view.range}`;
}

/** `#/agents/x?old=1` with the query replaced. */
export function withQuery(hash: string, query: string): string {
  const path = hash.split("?")[0] || "#/";
  return query ? `${path}?${query}` : path;
}

/** The query part of a location hash. */
export function hashQuery(hash: string): string {
  const at = hash.indexOf("?");
  return at < 0 ? "" : hash.slice(at + 1);
}

export function viewToQuery(view: HistoryView, nowS: number): HistoryQuery {
  if (!isFixed(view)) return rangeToQuery(view.range, nowS);
  const step = stepFor(view.to - view.from);
  return { from: view.from, to: view.to, step };
}

/** Reload every bucket for a preset; a fixed window in the past never changes. */
export function viewRefreshMs(view: HistoryView, nowS: number): number | null {
  if (!isFixed(view)) return historyRefreshMs(view.range);
  return view.to > nowS ? 15_000 : null;
}

export function queryUrl(agent: string, q: HistoryQuery, fields: readonly string[]): string {
  const params = new URLSearchParams({
    from: String(q.from), to: String(q.to), step: String(q.step), fields: fields.join(","),
  });
  return `/agents/${encodeURIComponent(agent)}/metrics?${params.toString()}`;
}

export function historyUrl(agent: string, key: string, nowS: number, fields: readonly string[]): string {
  return queryUrl(agent, rangeToQuery(key, nowS), fields);
}

/** `<input type="datetime-local">` value of unix seconds, in local time. */
export function toLocalInput(ts: number): string {
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Unix seconds of a datetime-local value (local time), null when it is not one. */
export function fromLocalInput(value: string): number | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/.test(value)) return null;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) ? ms / 1000 : null;
}
