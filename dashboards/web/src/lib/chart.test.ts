import { describe, expect, it } from "vitest";
import {
  appendFrame, appendFrameAll, axisWidth, emptyLive, historyToPlot, liveToPlot, liveWindow, maxOf,
  mergeSeed, niceMax, seedLive, timeLabel, timeTicks,
} from "./chart";
import type { History } from "./types";

const history: History = {
  agent: "a", start: 0, end: 100, step: 10, source: "raw",
  ts: [0, 10, 40],
  series: {
    cpu: { min: [1, 2, 3], avg: [10, 20, 30], max: [11, 21, 31] },
    mem: { min: [0, 0, 0], avg: [50, null, 70], max: [0, 0, 0] },
  },
};

describe("history → plot", () => {
  it("takes the average by default and breaks the line over missing buckets", () => {
    const [xs, cpu, mem] = historyToPlot(history, ["cpu", "mem"]);
    expect(xs).toEqual([0, 10, 20, 40]);
    expect(cpu).toEqual([10, 20, null, 30]);
    expect(mem).toEqual([50, null, null, 70]);
  });
  it("can show the maximum, and null for a field the history lacks", () => {
    const [, cpu, disk] = historyToPlot(history, ["cpu", "disk"], "max");
    expect(cpu).toEqual([11, 21, null, 31]);
    expect(disk).toEqual([null, null, null, null]);
  });
  it("gives empty columns for an empty history", () => {
    expect(historyToPlot({ ...history, ts: [] }, ["cpu"])).toEqual([[], []]);
  });
});

describe("live buffer", () => {
  it("appends frames and keeps only the newest points", () => {
    let b = emptyLive(["cpu"]);
    for (let t = 1; t <= 5; t++) b = appendFrame(b, { agent: "a", ts: t, values: { cpu: t * 10 } }, 3);
    expect(liveToPlot(b, ["cpu"])).toEqual([[3, 4, 5], [30, 40, 50]]);
  });
  it("drops duplicated and out-of-order frames so x stays sorted", () => {
    let b = appendFrame(emptyLive(["cpu"]), { agent: "a", ts: 5, values: { cpu: 1 } }, 10);
    const same = appendFrame(b, { agent: "a", ts: 5, values: { cpu: 2 } }, 10);
    expect(same).toBe(b);
    b = appendFrame(b, { agent: "a", ts: 4, values: { cpu: 3 } }, 10);
    expect(b.ts).toEqual([5]);
  });
  it("records null for a missing or non-numeric value", () => {
    const b = appendFrame(emptyLive(["cpu", "mem"]), { agent: "a", ts: 1, values: { cpu: null } }, 10);
    expect(b.values).toEqual({ cpu: [null], mem: [null] });
  });
  it("finds the largest value for the y axis", () => {
    expect(maxOf([[1, 2], [3, null], [9, 4]])).toBe(9);
  });
});

describe("axes", () => {
  it("never ticks below a second for two points a second apart", () => {
    const { splits, incr } = timeTicks(1000, 1001, 600);
    expect(incr).toBeGreaterThanOrEqual(1);
    expect(splits.every((s) => Number.isInteger(s))).toBe(true);
  });
  it("keeps ticks apart so dates do not overlap", () => {
    const { splits } = timeTicks(0, 7 * 86_400, 600);
    expect(splits.length).toBeLessThanOrEqual(600 / 90);
    expect(splits.length).toBeGreaterThanOrEqual(2);
  });
  it("labels seconds only for second ticks and the date only when it varies", () => {
    const t = new Date(2026, 11, 6, 7, 30, 15).getTime() / 1000;
    expect(timeLabel(t, 15, 300)).toBe("07:30:15");
    expect(timeLabel(t, 600, 3600)).toBe("07:30");
    expect(timeLabel(t, 21_600, 7 * 86_400)).toBe("12-06 07:30");
    expect(timeLabel(t, 86_400, 30 * 86_400)).toBe("12-06");
  });
  it("gives a y axis room for its widest label", () => {
    expect(axisWidth(["0 B/s", "20.0 MB/s"])).toBeGreaterThanOrEqual(9 * 7 + 10);
    expect(axisWidth([])).toBe(40);
  });
  it("rounds the y top up to 1, 2, 2.5 or 5 times a power of ten", () => {
    expect(niceMax(0)).toBe(1);
    expect(niceMax(17e6)).toBe(20e6);
    expect(niceMax(2.2)).toBe(2.5);
    expect(niceMax(61)).toBe(100);
  });
  it("puts the live window at the agent's now, so an offline agent is not stretched over years", () => {
    expect(liveWindow(10_000, null, 300)).toEqual([9700, 10_000]);
    expect(liveWindow(10_000, 7200, 300)).toEqual([16_900, 17_200]);
  });
});

describe("live seeding", () => {
  it("seeds from history and adds later frames and new keys", () => {
    const seed = seedLive(history, 10);
    expect(seed.ts).toEqual([0, 10, 40]);
    const live = appendFrameAll(
      appendFrameAll(emptyLive([]), { agent: "a", ts: 30, values: { cpu: 5 } }, 10),
      { agent: "a", ts: 50, values: { cpu: 6, "cpu.0": 7, rx_ts: 51 } }, 10,
    );
    expect(live.values["cpu.0"]).toEqual([null, 7]);
    expect(live.values.rx_ts).toBeUndefined();
    const merged = mergeSeed(seed, live, 10);
    expect(merged.ts).toEqual([0, 10, 40, 50]);
    expect(merged.values.cpu).toEqual([10, 20, 30, 6]);
    expect(merged.values["cpu.0"]).toEqual([null, null, null, 7]);
  });
  it("seeds per-core lines from history, so they start full rather than from the first frame", () => {
    const detailed = {
      ...history,
      series: { ...history.series, "cpu.0": { min: [1, 2, 3], avg: [1, 2, 3], max: [1, 2, 3] } },
    };
    const live = appendFrameAll(emptyLive([]), { agent: "a", ts: 50, values: { cpu: 6, "cpu.0": 7 } }, 10);
    const merged = mergeSeed(seedLive(detailed, 10), live, 10);
    expect(merged.values["cpu.0"]).toEqual([1, 2, 3, 7]);
  });
});
