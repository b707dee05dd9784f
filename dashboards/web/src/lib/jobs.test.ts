import { describe, expect, it } from "vitest";
import { jobProgress, jobRequest, jobSummary, parseSelector, selectAgents, type Job } from "./jobs";
import type { Agent } from "./types";

function agent(id: string, labels: Record<string, string>): Agent {
  return { id, state: "online", epoch: 1, since: 1, reason: null, clean: false, last_seen: 1, heartbeat_s: 5, host: null, version: null, labels, metrics: null };
}

function job(over: Partial<Job> = {}): Job {
  return {
    id: "job-1", name: "metrics", args: {}, state: "running", total: 4, agents: ["a", "b", "c", "d"], counts: {},
    failures: 0, batch_size: 2, max_failures: 0, timeout_s: null, actor: "user:ann", created_at: 1, finished_at: null,
    stopped_reason: null, ...over,
  };
}

describe("label selectors", () => {
  it("parses key=value pairs separated by commas, spaces ignored", () => {
    expect(parseSelector(" role=web , site = paris")).toEqual({ ok: true, labels: { role: "web", site: "paris" } });
    expect(parseSelector("")).toEqual({ ok: true, labels: {} });
  });

  it("says what is wrong with a bad selector", () => {
    expect(parseSelector("role")).toEqual({ ok: false, error: '"role" is not key=value' });
    expect(parseSelector("=web")).toEqual({ ok: false, error: '"=web" is not key=value' });
    expect(parseSelector("a=1,a=2").ok).toBe(false);
  });

  it("selects the agents whose labels hold every pair", () => {
    const fleet = [agent("b", { role: "web" }), agent("a", { role: "web", site: "x" }), agent("c", { role: "db" })];
    expect(selectAgents(fleet, { role: "web" }).map((a) => a.id)).toEqual(["a", "b"]);
    expect(selectAgents(fleet, { role: "web", site: "x" }).map((a) => a.id)).toEqual(["a"]);
    expect(selectAgents(fleet, {}).map((a) => a.id)).toEqual(["a", "b", "c"]);
  });
});

describe("job progress", () => {
  it("counts finished commands and failures, not those still in flight", () => {
    const j = job({ counts: { ok: 2, failed: 1, running: 1 } });
    expect(jobProgress(j)).toEqual({ finished: 3, failed: 1, share: 0.75 });
    expect(jobSummary(j)).toBe("running: 3 of 4 done, 1 failed");
  });

  it("sums up done and stopped jobs", () => {
    expect(jobSummary(job({ state: "done", counts: { ok: 4 } }))).toBe("done: 4 ok");
    expect(jobSummary(job({ state: "stopped", stopped_reason: "aborted by user:ann" }))).toBe("stopped: aborted by user:ann");
    expect(jobProgress(job({ total: 0 })).share).toBe(0);
  });
});

describe("the job form", () => {
  const form = { name: "metrics", selector: "role=web", batchSize: "2", maxFailures: "1", timeout: "" };

  it("builds the POST /jobs body", () => {
    expect(jobRequest(form)).toEqual({ ok: true, body: { name: "metrics", labels: { role: "web" }, batch_size: 2, max_failures: 1 } });
    expect(jobRequest({ ...form, timeout: "30" })).toMatchObject({ ok: true, body: { timeout: 30 } });
  });

  it("refuses bad numbers and selectors with a sentence", () => {
    expect(jobRequest({ ...form, batchSize: "0" })).toEqual({ ok: false, error: "Batch size is a whole number from 1 to 1000." });
    expect(jobRequest({ ...form, maxFailures: "-1" })).toEqual({ ok: false, error: "Abort threshold is a whole number from 0 to 100000." });
    expect(jobRequest({ ...form, selector: "web" })).toEqual({ ok: false, error: 'Label selector: "web" is not key=value.' });
    expect(jobRequest({ ...form, timeout: "x" }).ok).toBe(false);
  });
});
