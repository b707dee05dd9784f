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

/**
 * The buffer with `frame` appended like appendFrame, and a new column for every numeric
 * key it brings (a core, a mount, a sensor seen for the first time), null before.
 */
export function appendFrameAll(buffer: LiveBuffer, frame: MetricsFrame, maxPoints: number): LiveBuffer {
  const added = Object.keys(frame.values).filter(
    (k) => !(k in buffer.values) && k !== "rx_ts" && typeof frame.values[k] === "number",
  );
  if (added.length === 0) return appendFrame(buffer, frame, maxPoints);
  const values = { ...buffer.values };
  for (const k of added) values[k] = buffer.ts.map(() => null);
  return appendFrame({ ts: buffer.ts, values }, frame, maxPoints);
}

/** A live buffer seeded from history (the averages of every field it has). */
export function seedLive(history: History, maxPoints: number): LiveBuffer {
  const cut = Math.max(0, history.ts.length - maxPoints);
  const values: Record<string, (number | null)[]> = {};
  for (const [field, s] of Object.entries(history.series)) {
    values[field] = s.avg.slice(cut).map((v) => (v == null || !Number.isFinite(v) ? null : v));
  }
  return { ts: history.ts.slice(cut), values };
}

/** The seed followed by the frames received after its last point (any received before it came). */
export function mergeSeed(seed: LiveBuffer, live: LiveBuffer, maxPoints: number): LiveBuffer {
  const lastSeed = seed.ts[seed.ts.length - 1] ?? -Infinity;
  const keep = live.ts.map((t, i) => [t, i] as const).filter(([t]) => t > lastSeed).map(([, i]) => i);
  const ts = [...seed.ts, ...keep.map((i) => live.ts[i]!)];
  const keys = new Set([...Object.keys(seed.values), ...Object.keys(live.values)]);
  const cut = Math.max(0, ts.length - maxPoints);
  const values: Record<string, (number | null)[]> = {};
  for (const k of keys) {
    const head = seed.values[k] ?? seed.ts.map(() => null);
    const tail = keep.map((i) => live.values[k]?.[i] ?? null);
    values[k] = [...head, ...tail].slice(cut);
  }
  return { ts: ts.slice(cut), values };
}

/** The live chart's x window: the last `spanS` seconds of the agent's clock (now + its offset). */
export function liveWindow(nowS: number, clockOffsetS: number | null | undefined, spanS: number): [number, number] {
  const end = nowS + (clockOffsetS != null && Number.isFinite(clockOffsetS) ? clockOffsetS : 0);
  return [end - spanS, end];
}

const TICK_STEPS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200,
  86_400, 172_800, 604_800, 2_592_000,
];

/**
 * Time axis ticks over [min, max] for a chart `widthPx` wide: whole seconds at least, at
 * least `gapPx` apart, on round local times. Two points a second apart get no sub-second ticks.
 */
export function timeTicks(min: number, max: number, widthPx: number, gapPx = 90): { splits: number[]; incr: number } {
  if (!Number.isFinite(min) || !Number.isFinite(max) || max <= min) return { splits: [], incr: 1 };
  const most = Math.max(2, Math.floor(widthPx / gapPx));
  const span = max - min;
  const incr = TICK_STEPS.find((s) => span / s <= most) ?? Math.ceil(span / most / 86_400) * 86_400;
  const offset = -new Date(min * 1000).getTimezoneOffset() * 60; // local midnight, local hours
  const splits: number[] = [];
  for (let t = Math.ceil((min + offset) / incr) * incr - offset; t <= max; t += incr) splits.push(t);
  return { splits, incr };
}

/** A tick's text: seconds only when ticks are seconds apart, the date only when it varies. */
export function timeLabel(ts: number, incr: number, spanS: number): string {
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  const date = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (incr < 60) return `${hm}:${pad(d.getSeconds())}`;
  if (incr >= 86_400) return date;
  return spanS > 86_400 ? `${date} ${hm}` : hm;
}

/** Pixels a y axis needs for its widest label (about 7 px a character at 12 px), never clipped. */
export function axisWidth(labels: readonly string[], charPx = 7.2): number {
  const longest = labels.reduce((m, l) => Math.max(m, l.length), 0);
  return Math.max(40, Math.ceil(longest * charPx) + 18);
}

/** A round top for a y axis starting at 0: 1, 2, 2.5 or 5 times a power of ten at or above `max`. */
export function niceMax(max: number): number {
  if (!Number.isFinite(max) || max <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}
