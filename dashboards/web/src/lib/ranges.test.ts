import { describe, expect, it } from "vitest";
import {
  fixedView, fromLocalInput, hashQuery, historyRefreshMs, historyUrl, parseView, rangeSpec,
  rangeToQuery, RANGES, stepFor, toLocalInput, viewParams, viewRefreshMs, viewToQuery, withQuery,
} from "./ranges";

describe("history ranges", () => {
  it("offers presets from 5 min to 30 d with a few hundred points each", () => {
    expect(RANGES.map((r) => r.key)).toEqual(["5m", "15m", "1h", "6h", "24h", "7d", "30d"]);
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
  it("ends the window at the next step boundary after now, spanning the whole range", () => {
    const q = rangeToQuery("1h", 1000.5);
    expect(q).toEqual({ from: 1005 - 3600, to: 1005, step: 15 });
    const q15 = rangeToQuery("15m", 1_700_000_001);
    expect(q15.to - q15.from).toBe(900);
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

describe("views in the URL", () => {
  it("reads a preset or a fixed window back from what it wrote", () => {
    expect(parseView(viewParams({ range: "6h" }))).toEqual({ range: "6h" });
    expect(parseView(viewParams({ from: 1000, to: 5000 }))).toEqual({ from: 1000, to: 5000 });
  });
  it("falls back to 1 h for a missing, unknown or broken query", () => {
    expect(parseView("")).toEqual({ range: "1h" });
    expect(parseView("range=99y")).toEqual({ range: "1h" });
    expect(parseView("from=abc&to=5")).toEqual({ range: "1h" });
    expect(parseView("from=500&to=100")).toEqual({ range: "1h" });
  });
  it("widens a zoom under a minute and clamps a window past 400 days", () => {
    expect(fixedView(1000.2, 1010.7)).toEqual({ from: 975, to: 1035 });
    const wide = fixedView(0, 500 * 86_400)!;
    expect("from" in wide && wide.to - wide.from).toBe(400 * 86_400);
    expect(fixedView(10, 10)).toBeNull();
  });
  it("swaps the query of a hash route and reads it back", () => {
    expect(withQuery("#/agents/a1", "range=6h")).toBe("#/agents/a1?range=6h");
    expect(withQuery("#/agents/a1?range=6h", "from=1&to=2")).toBe("#/agents/a1?from=1&to=2");
    expect(hashQuery("#/agents/a1?range=6h")).toBe("range=6h");
    expect(hashQuery("#/agents/a1")).toBe("");
  });
  it("queries a fixed window exactly, with a step giving at most ~400 points", () => {
    const q = viewToQuery({ from: 1000, to: 1000 + 7200 }, 1e9);
    expect(q).toEqual({ from: 1000, to: 8200, step: 30 });
    expect(stepFor(60)).toBe(1);
    expect(stepFor(400 * 86_400)).toBe(86_400);
  });
  it("reloads a preset, and a fixed window only while it reaches into the future", () => {
    expect(viewRefreshMs({ range: "1h" }, 0)).toBe(15_000);
    expect(viewRefreshMs({ from: 0, to: 100 }, 200)).toBeNull();
    expect(viewRefreshMs({ from: 0, to: 300 }, 200)).toBe(15_000);
  });
  it("round-trips datetime-local values and refuses other text", () => {
    const ts = new Date(2026, 11, 6, 7, 30).getTime() / 1000;
    expect(toLocalInput(ts)).toBe("2026-12-06T07:30");
    expect(fromLocalInput("2026-12-06T07:30")).toBe(ts);
    expect(fromLocalInput("yesterday")).toBeNull();
  });
});
