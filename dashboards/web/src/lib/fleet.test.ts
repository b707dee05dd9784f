import { describe, expect, it } from "vitest";
import { applyEvent, countByState, EMPTY_FLEET, fleetReducer, matchesText, visibleAgents } from "./fleet";
import type { Agent } from "./types";

function agent(id: string, over: Partial<Agent> = {}): Agent {
  return {
    id, state: "online", epoch: 1, since: 10, reason: null, clean: false, last_seen: 100,
    heartbeat_s: 10, host: `${id}.lan`, version: "0.1", labels: {}, metrics: null, alerts: 0, ...over,
  };
}

const loaded = fleetReducer(EMPTY_FLEET, {
  type: "loaded",
  agents: [agent("web-1", { labels: { role: "web" }, alerts: 2 }), agent("db-1", { state: "critical" })],
});

describe("the fleet reducer", () => {
  it("replaces the fleet with a loaded list", () => {
    expect(loaded.loaded).toBe(true);
    expect(Object.keys(loaded.agents).sort()).toEqual(["db-1", "web-1"]);
  });

  it("moves an agent to the state of an agent event and keeps its alert count", () => {
    const data = { ...agent("web-1", { state: "late", labels: { role: "web" } }), old: "online" };
    delete (data as Partial<Agent>).alerts;
    const next = applyEvent(loaded, { kind: "agent", ts: 1, data });
    expect(next.agents["web-1"]!.state).toBe("late");
    expect(next.agents["web-1"]!.alerts).toBe(2);
    expect("old" in next.agents["web-1"]!).toBe(false);
    expect(loaded.agents["web-1"]!.state).toBe("online"); // the old state is not mutated
  });

  it("drops an agent the maestro says was removed, and ignores an unknown one", () => {
    const next = applyEvent(loaded, { kind: "agent_removed", ts: 1, data: { id: "db-1" } });
    expect(Object.keys(next.agents)).toEqual(["web-1"]);
    expect(Object.keys(loaded.agents).sort()).toEqual(["db-1", "web-1"]); // not mutated
    expect(applyEvent(next, { kind: "agent_removed", ts: 2, data: { id: "db-1" } })).toBe(next);
  });

  it("adds an agent it had never seen", () => {
    const next = applyEvent(loaded, { kind: "agent", ts: 1, data: { ...agent("new-1") } });
    expect(next.agents["new-1"]!.state).toBe("online");
  });

  it("updates metrics and last seen from a metrics frame, ignoring older frames", () => {
    const frame = { agent: "web-1", ts: 200, values: { cpu: 55, mem: 40 } };
    const next = applyEvent(loaded, { kind: "metrics", ts: 200, data: frame });
    expect(next.agents["web-1"]!.metrics).toMatchObject({ ts: 200, cpu: 55, mem: 40 });
    expect(next.agents["web-1"]!.last_seen).toBe(200);
    const older = applyEvent(next, { kind: "metrics", ts: 150, data: { ...frame, ts: 150, values: { cpu: 1 } } });
    expect(older.agents["web-1"]!.metrics!.cpu).toBe(55);
  });

  it("ignores malformed events and metrics of unknown agents", () => {
    expect(applyEvent(loaded, { kind: "agent", ts: 1, data: { nope: 1 } })).toBe(loaded);
    expect(applyEvent(loaded, { kind: "metrics", ts: 1, data: { agent: "x", ts: 1, values: {} } })).toBe(loaded);
    expect(applyEvent(loaded, { kind: "command", ts: 1, data: { id: "c1" } })).toBe(loaded);
  });
});

describe("filtering the fleet", () => {
  it("searches id, host and labels, all words must match", () => {
    const a = agent("web-1", { host: "alpha.example", labels: { role: "web", zone: "eu" } });
    expect(matchesText(a, "")).toBe(true);
    expect(matchesText(a, "ALPHA")).toBe(true);
    expect(matchesText(a, "role=web eu")).toBe(true);
    expect(matchesText(a, "role=db")).toBe(false);
  });

  it("filters by state and sorts trouble first", () => {
    expect(visibleAgents(loaded, { state: "", text: "" }).map((a) => a.id)).toEqual(["db-1", "web-1"]);
    expect(visibleAgents(loaded, { state: "online", text: "" }).map((a) => a.id)).toEqual(["web-1"]);
    expect(visibleAgents(loaded, { state: "", text: "web" }).map((a) => a.id)).toEqual(["web-1"]);
  });

  it("counts agents per state", () => {
    expect(countByState(loaded)).toEqual({ online: 1, critical: 1 });
  });
});
