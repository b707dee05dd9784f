import { describe, expect, it } from "vitest";
import { type Agent, clockWarning, commandBlock, dataAge, isStale, sampleInterval } from "./agentLive";

const NOW = 1_800_000_000;

function agent(over: Partial<Agent> & Record<string, unknown> = {}): Agent {
  return {
    id: "a1", state: "online", epoch: 1, since: NOW - 100, reason: null, clean: false,
    last_seen: NOW, heartbeat_s: 5, host: "h", version: "1", labels: {},
    metrics: { ts: NOW - 1, rx_ts: NOW - 1, cpu: 5 }, ...over,
  } as Agent;
}

describe("stale data", () => {
  it("finds the usual sample interval", () => {
    expect(sampleInterval([1, 2, 3, 4, 10])).toBe(1);
    expect(sampleInterval([1])).toBeNull();
  });
  it("is fresh within three samples and stale after", () => {
    expect(isStale(agent(), NOW, 1)).toBe(false);
    expect(isStale(agent({ metrics: { ts: NOW - 4, rx_ts: NOW - 4 } }), NOW, 1)).toBe(true);
  });
  it("judges by the maestro's receive time, not the agent's skewed clock", () => {
    const skewed = agent({ metrics: { ts: NOW + 7200, rx_ts: NOW - 1 }, clock_offset_s: 7200 });
    expect(dataAge(skewed, NOW)).toBe(1);
    expect(isStale(skewed, NOW, 1)).toBe(false);
  });
  it("marks an offline agent's values stale at once", () => {
    expect(isStale(agent({ state: "offline" }), NOW, 1)).toBe(true);
  });
  it("falls back to the heartbeat interval before any live frame", () => {
    expect(isStale(agent({ metrics: { ts: NOW - 12, rx_ts: NOW - 12 } }), NOW, null)).toBe(false);
    expect(isStale(agent({ metrics: { ts: NOW - 16, rx_ts: NOW - 16 } }), NOW, null)).toBe(true);
  });
});

describe("commands", () => {
  it("are blocked with a reason for an agent that cannot answer", () => {
    expect(commandBlock(agent({ state: "offline" }))).toBe("agent offline");
    expect(commandBlock(agent({ state: "critical" }))).toBe("agent not responding");
    expect(commandBlock(agent({ state: "online" }))).toBeNull();
    expect(commandBlock(agent({ state: "late" }))).toBeNull();
  });
});

describe("clock", () => {
  it("warns past a few seconds, either way", () => {
    expect(clockWarning(7200)).toBe("clock 2 h ahead");
    expect(clockWarning(-30)).toBe("clock 30 s behind");
    expect(clockWarning(1.5)).toBeNull();
    expect(clockWarning(null)).toBeNull();
  });
});
