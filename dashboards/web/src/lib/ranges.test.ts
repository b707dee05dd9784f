import { describe, expect, it } from "vitest";
import { historyRefreshMs, historyUrl, rangeSpec, rangeToQuery, RANGES } from "./ranges";

describe("history ranges", () => {
  it("offers 15 min, 1 h, 24 h and 7 d with a few hundred points each", () => {
    expect(RANGES.map((r) => r.key)).toEqual(["15m", "1h", "24h", "7d"]);
    for (const r of RANGES) {
      const points = r.seconds / r.step;
      expect(points).toBeGreaterThanOrEqual(100);
      expect(points).toBeLessThanOrEqual(400);
    }
  });
  it("rolls up by the minute for day and week ranges", () => {
    expect(rangeSpec("24h").step % 60).toBe(0);
    expect(rangeSpec("7d").step % 60).toBe(0);
  });
  it("ends the window at the next step boundary after now", () => {
    const q = rangeToQuery("1h", 1000.5);
    expect(q).toEqual({ from: 1005 - 3600, to: 1005, step: 15 });
  });
  it("falls back to 15 min for an unknown key", () => {
    expect(rangeSpec("bogus").key).toBe("15m");
  });
  it("builds the metrics URL with escaped agent id and fields", () => {
    const url = historyUrl("a b/c", "15m", 600, ["cpu", "mem"]);
    expect(url).toBe("/agents/a%20b%2Fc/metrics?from=-300&to=600&step=5&fields=cpu%2Cmem");
  });
  it("reloads a chart about once a bucket, between 10 s and a minute", () => {
    expect(historyRefreshMs("15m")).toBe(10_000);
    expect(historyRefreshMs("1h")).toBe(15_000);
    expect(historyRefreshMs("24h")).toBe(60_000);
    expect(historyRefreshMs("7d")).toBe(60_000);
  });
});
