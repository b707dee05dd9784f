import { describe, expect, it } from "vitest";
import { phaseCounts, releaseVersions, rolloutBatches, rolloutRequest, rolloutShares, stageText, type Rollout, type RolloutAgent } from "./rollout";

function agent(id: string, batch: number | null, phase: RolloutAgent["phase"]): RolloutAgent {
  return { id, batch, phase, reason: null, from_version: "0.1.0", version: "0.1.0", command_id: null };
}

function rollout(over: Partial<Rollout> = {}): Rollout {
  return {
    version: "0.2.0", stage: "batches", batch: 1, batches: 3, canary: 1, health_timeout_s: 180, rollback_on_abort: true,
    phases: {}, failures: 0, stop_reason: null, ...over,
  };
}

const FORM = { version: "0.2.0", selector: "role=web", canary: "1", batchSize: "10", maxFailures: "0", healthTimeout: "180", rollback: true };

describe("rollout progress", () => {
  it("groups the agents as they are sent: already there, canary, then batches", () => {
    const r = rollout({ agents: [agent("c", 1, "sent"), agent("a", 0, "healthy"), agent("z", null, "healthy"), agent("d", 2, "waiting")] });
    expect(rolloutBatches(r).map((b) => [b.label, b.agents.map((a) => a.id)])).toEqual([
      ["already on the version", ["z"]],
      ["canary", ["a"]],
      ["batch 1", ["c"]],
      ["batch 2", ["d"]],
    ]);
    expect(rolloutBatches(rollout({ canary: 0, agents: [agent("a", 0, "sent")] }))[0]?.label).toBe("batch 1");
  });

  it("counts phases in a fixed order and says where the rollout stands", () => {
    expect(phaseCounts({ phases: { waiting: 6, healthy: 3, rolled_back: 1 } })).toBe("healthy 3 · waiting 6 · rolled back 1");
    expect(stageText(rollout())).toBe("batch 1 of 2");
    expect(stageText(rollout({ stage: "canary" }))).toBe("canary");
    expect(stageText(rollout({ stage: "rolling_back" }))).toBe("rolling back what it switched");
    expect(rolloutShares({ phases: { healthy: 5, failed: 1, rolled_back: 1 } }, 10)).toEqual({ healthy: 0.5, failed: 0.2 });
  });
});

describe("the rollout form", () => {
  it("builds the POST /jobs/update body", () => {
    expect(rolloutRequest(FORM)).toEqual({
      ok: true,
      body: { version: "0.2.0", labels: { role: "web" }, canary: 1, batch_size: 10, max_failures: 0, health_timeout_s: 180, rollback_on_abort: true },
    });
  });

  it("says what is wrong", () => {
    expect(rolloutRequest({ ...FORM, version: "" })).toEqual({ ok: false, error: "Choose a release version (like 0.2.0)." });
    expect(rolloutRequest({ ...FORM, version: "1.0-beta" }).ok).toBe(false);
    expect(rolloutRequest({ ...FORM, selector: "role" })).toEqual({ ok: false, error: 'Label selector: "role" is not key=value.' });
    expect(rolloutRequest({ ...FORM, batchSize: "0" })).toEqual({ ok: false, error: "Batch size is a whole number from 1 to 1000." });
    expect(rolloutRequest({ ...FORM, healthTimeout: "5" }).ok).toBe(false);
  });

  it("offers the release store's versions, none without a store", () => {
    expect(releaseVersions({ items: [{ version: "0.3.0" }, { version: "0.2.0" }], refused: [] })).toEqual(["0.3.0", "0.2.0"]);
    expect(releaseVersions(null)).toEqual([]);
  });
});
