import { describe, expect, it } from "vitest";
import { appendFrame, emptyLive, historyToPlot, liveToPlot, maxOf } from "./chart";
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
