import { describe, expect, it } from "vitest";
import { silenceMatches, silenceScope, silencesInForce } from "./silences";
import type { Silence } from "./types";

function silence(over: Partial<Silence>): Silence {
  return {
    id: "s1",
    agent: "a1",
    rule: "agent_offline",
    starts_at: 100,
    ends_at: 200,
    created_by: "user:admin",
    created_at: 100,
    reason: "",
    ended_by: null,
    ended_at: null,
    ...over,
  };
}

describe("silences", () => {
  it("says what a silence mutes", () => {
    expect(silenceScope({ agent: "a1", rule: "cpu_high" })).toBe("cpu_high on a1");
    expect(silenceScope({ agent: "a1", rule: null })).toBe("every rule on a1");
    expect(silenceScope({ agent: null, rule: "disk_high" })).toBe("disk_high on every agent");
  });
  it("keeps only those in force, soonest to end first", () => {
    const list = [
      silence({ id: "later", ends_at: 300 }),
      silence({ id: "ended", ended_at: 150, ended_by: "user:bob" }),
      silence({ id: "past", ends_at: 120 }),
      silence({ id: "just made", starts_at: 155, ends_at: 400 }), // the page's clock lags
      silence({ id: "soon", ends_at: 160 }),
    ];
    expect(silencesInForce(list, 150).map((s) => s.id)).toEqual(["soon", "later", "just made"]);
  });
  it("matches an alert by agent and rule, a missing one matching all", () => {
    expect(silenceMatches({ agent: "a1", rule: "cpu_high" }, "a1", "cpu_high")).toBe(true);
    expect(silenceMatches({ agent: "a1", rule: "cpu_high" }, "a2", "cpu_high")).toBe(false);
    expect(silenceMatches({ agent: "a1", rule: null }, "a1", "mem_high")).toBe(true);
    expect(silenceMatches({ agent: null, rule: "mem_high" }, "a9", "mem_high")).toBe(true);
    expect(silenceMatches({ agent: null, rule: "mem_high" }, "a9", "cpu_high")).toBe(false);
  });
});
