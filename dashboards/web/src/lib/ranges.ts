// History ranges of the agent page → the query of GET /agents/{id}/metrics. Pure.

export type RangeKey = "15m" | "1h" | "24h" | "7d";

export interface RangeSpec {
  key: RangeKey;
  label: string;
  seconds: number;
  step: number; // bucket width in seconds: a few hundred points per chart
}

export const RANGES: readonly RangeSpec[] = [
  { key: "15m", label: "15 min", seconds: 15 * 60, step: 5 },
  { key: "1h", label: "1 h", seconds: 3600, step: 15 },
  { key: "24h", label: "24 h", seconds: 86_400, step: 300 },
  { key: "7d", label: "7 d", seconds: 7 * 86_400, step: 3600 },
];

export function rangeSpec(key: string): RangeSpec {
  return RANGES.find((r) => r.key === key) ?? RANGES[0]!;
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

export function historyUrl(agent: string, key: string, nowS: number, fields: readonly string[]): string {
  const q = rangeToQuery(key, nowS);
  const params = new URLSearchParams({
    from: String(q.from), to: String(q.to), step: String(q.step), fields: fields.join(","),
  });
  return `/agents/${encodeURIComponent(agent)}/metrics?${params.toString()}`;
}
