import { describe, expect, it } from "vitest";
import { agentStateStyle, commandStateClass, isFinalCommandState, stateRank } from "./states";

describe("agent state colours", () => {
  it("gives each liveness state its colour", () => {
    expect(agentStateStyle("online").dot).toContain("emerald");
    expect(agentStateStyle("late").dot).toContain("amber");
    expect(agentStateStyle("critical").dot).toContain("red");
    expect(agentStateStyle("stopping").dot).toBe("bg-slate-400");
    expect(agentStateStyle("offline").dot).toBe("bg-slate-700");
  });
  it("shows an unknown state by its name in a neutral colour", () => {
    const s = agentStateStyle("weird");
    expect(s.label).toBe("weird");
    expect(s.dot).toBe("bg-slate-600");
  });
  it("ranks trouble before health before gone", () => {
    expect(stateRank("critical")).toBeLessThan(stateRank("late"));
    expect(stateRank("late")).toBeLessThan(stateRank("online"));
    expect(stateRank("online")).toBeLessThan(stateRank("offline"));
    expect(stateRank("nonsense")).toBeGreaterThan(stateRank("offline"));
  });
});

describe("command states", () => {
  it("knows which states are final", () => {
    for (const s of ["ok", "failed", "rejected", "expired", "timed_out"]) expect(isFinalCommandState(s)).toBe(true);
    for (const s of ["queued", "sent", "accepted", "running"]) expect(isFinalCommandState(s)).toBe(false);
  });
  it("colours ok green, other final states red and open ones amber", () => {
    expect(commandStateClass("ok")).toContain("emerald");
    expect(commandStateClass("timed_out")).toContain("red");
    expect(commandStateClass("running")).toContain("amber");
  });
});
