// Shaping history and live frames into uPlot's column data. Pure.

import type { History, MetricsFrame } from "./types";

/** uPlot's AlignedData: x values first, then one column per series. */
export type PlotData = [number[], ...(number | null)[][]];

/**
 * History → plot columns of `pick` (avg by default) for `fields`, with a null inserted
 * where buckets are missing, so uPlot draws a gap rather than a line across an outage.
 */
export function historyToPlot(
  history: History,
  fields: readonly string[],
  pick: "min" | "avg" | "max" = "avg",
): PlotData {
  const xs: number[] = [];
  const cols: (number | null)[][] = fields.map(() => []);
  const gap = history.step * 1.5;
  history.ts.forEach((t, i) => {
    const prev = i > 0 ? history.ts[i - 1] : undefined;
    if (prev !== undefined && t - prev > gap) {
      xs.push(prev + history.step);
      cols.forEach((c) => c.push(null));
    }
    xs.push(t);
    fields.forEach((f, j) => {
      const v = history.series[f]?.[pick][i];
      cols[j]!.push(v == null || !Number.isFinite(v) ? null : v);
    });
  });
  return [xs, ...cols];
}

export interface LiveBuffer {
  ts: number[];
  values: Record<string, (number | null)[]>;
}

export function emptyLive(fields: readonly string[]): LiveBuffer {
  return { ts: [], values: Object.fromEntries(fields.map((f) => [f, []])) };
}

/**
 * The buffer with `frame` appended, keeping the newest `maxPoints`. A frame not newer
 * than the last one (a duplicate or a reordered message) is dropped: uPlot needs x sorted.
 */
export function appendFrame(buffer: LiveBuffer, frame: MetricsFrame, maxPoints: number): LiveBuffer {
  const last = buffer.ts[buffer.ts.length - 1];
  if (last !== undefined && frame.ts <= last) return buffer;
  const cut = Math.max(0, buffer.ts.length + 1 - maxPoints);
  const values: Record<string, (number | null)[]> = {};
  for (const [field, col] of Object.entries(buffer.values)) {
    const v = frame.values[field];
    values[field] = [...col.slice(cut), typeof v === "number" && Number.isFinite(v) ? v : null];
  }
  return { ts: [...buffer.ts.slice(cut), frame.ts], values };
}

export function liveToPlot(buffer: LiveBuffer, fields: readonly string[]): PlotData {
  return [buffer.ts, ...fields.map((f) => buffer.values[f] ?? buffer.ts.map(() => null))];
}

/** The largest finite value in the columns, for a y-axis that fits rates. */
export function maxOf(data: PlotData): number {
  let m = 0;
  for (const col of data.slice(1) as (number | null)[][]) {
    for (const v of col) if (v != null && v > m) m = v;
  }
  return m;
}
