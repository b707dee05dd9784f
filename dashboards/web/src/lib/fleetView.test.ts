import { describe, expect, it } from "vitest";
import { applyEvent, EMPTY_FLEET, fleetReducer } from "./fleet";
import {
  groupAgents, isStale, labelKeys, parseLayout, parseSortKey, sortAgents,
} from "./fleetView";
import type { Agent, AgentMetrics } from "./types";

function agent(id: string, over: Partial<Agent> = {}): Agent {
  return {
    id, state: "online", epoch: 1, since: 10, reason: null, clean: false, last_seen: 100,
    heartbeat_s: 10, host: `${id}.lan`, version: "0.1", labels: {}, metrics: null, alerts: 0, ...over,
  };
}
const m = (ts: number, v: Partial<AgentMetrics> = {}): AgentMetrics => ({ ts, ...v });
const ids = (list: Agent[]) => list.map((a) => a.id);

describe("sorting the fleet", () => {
  const fleet = [
    agent("web-10", { metrics: m(1, { cpu: 20, mem: 90 }), last_seen: 50 }),
    agent("web-2", { state: "critical", metrics: m(1, { cpu: 95, mem: 10 }), last_seen: 90 }),
    agent("db-1", { state: "offline", metrics: null, last_seen: 10 }),
  ];

  it("puts trouble first by default, then by id", () => {
    expect(ids(sortAgents(fleet, "state"))).toEqual(["web-2", "web-10", "db-1"]);
  });

  it("sorts names the way people count (web-2 before web-10)", () => {
    expect(ids(sortAgents(fleet, "id"))).toEqual(["db-1", "web-2", "web-10"]);
  });

  it("puts the busiest first and agents with no figure last", () => {
    expect(ids(sortAgents(fleet, "cpu"))).toEqual(["web-2", "web-10", "db-1"]);
    expect(ids(sortAgents(fleet, "mem"))).toEqual(["web-10", "web-2", "db-1"]);
  });

  it("puts the agent silent for longest first", () => {
    expect(ids(sortAgents(fleet, "seen"))).toEqual(["db-1", "web-10", "web-2"]);
  });

  it("does not reorder the list it is given", () => {
    sortAgents(fleet, "id");
    expect(ids(fleet)).toEqual(["web-10", "web-2", "db-1"]);
  });

  it("reads stored choices and falls back on unknown ones", () => {
    expect(parseSortKey("cpu")).toBe("cpu");
    expect(parseSortKey("bogus")).toBe("state");
    expect(parseLayout("table")).toBe("table");
    expect(parseLayout(null)).toBe("cards");
  });
});

describe("grouping by label", () => {
  const fleet = [
    agent("a", { labels: { site: "paris", role: "web" } }),
    agent("b", { labels: { site: "lyon" } }),
    agent("c", {}),
    agent("d", { labels: { site: "lyon" } }),
  ];

  it("lists every label key once", () => {
    expect(labelKeys(fleet)).toEqual(["role", "site"]);
  });

  it("groups by value in order, keeps the order inside, and puts unlabelled agents last", () => {
    const groups = groupAgents(fleet, "site");
    expect(groups.map((g) => g.title)).toEqual(["site=lyon", "site=paris", "no site"]);
    expect(groups.map((g) => ids(g.agents))).toEqual([["b", "d"], ["a"], ["c"]]);
  });

  it("makes one group of everything without a key", () => {
    const groups = groupAgents(fleet, "");
    expect(groups).toHaveLength(1);
    expect(ids(groups[0]!.agents)).toEqual(["a", "b", "c", "d"]);
  });
});

describe("stale data", () => {
  it("is stale once three samples are missing, at the interval seen live", () => {
    const a = agent("a", { metrics: m(100), sample_s: 1 });
    expect(isStale(a, 102.9)).toBe(false);
    expect(isStale(a, 103.5)).toBe(true);
  });

  it("falls back on the heartbeat when no live sample was seen", () => {
    const a = agent("a", { metrics: m(100), heartbeat_s: 10 });
    expect(isStale(a, 125)).toBe(false);
    expect(isStale(a, 131)).toBe(true);
  });

  it("marks the last figures of an offline agent at once", () => {
    expect(isStale(agent("a", { state: "offline", metrics: m(100), sample_s: 1 }), 100.5)).toBe(true);
  });

  it("marks nothing when there is no data", () => {
    expect(isStale(agent("a"), 1e9)).toBe(false);
  });

  it("learns the interval from consecutive live frames and keeps it over a reload", () => {
    let s = fleetReducer(EMPTY_FLEET, { type: "loaded", agents: [agent("a", { metrics: m(100) })] });
    s = applyEvent(s, { kind: "metrics", ts: 102, data: { agent: "a", ts: 102, values: { cpu: 1 } } });
    s = applyEvent(s, { kind: "metrics", ts: 104, data: { agent: "a", ts: 104, values: { cpu: 2 } } });
    expect(s.agents["a"]!.sample_s).toBe(2);
    s = fleetReducer(s, { type: "loaded", agents: [agent("a", { metrics: m(104) })] });
    expect(s.agents["a"]!.sample_s).toBe(2);
  });
});
