import { describe, expect, it } from "vitest";
import { JOB_COMMANDS, jobCommandsFor, jobTitle, jobProgress, jobRequest, jobSummary, parseSelector, selectAgents, type Job } from "./jobs";
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
    expect(jobRequest(form)).toEqual({ ok: true, body: { name: "metrics", args: {}, labels: { role: "web" }, batch_size: 2, max_failures: 1 } });
    expect(jobRequest({ ...form, timeout: "30" })).toMatchObject({ ok: true, body: { timeout: 30 } });
  });

  it("refuses bad numbers and selectors with a sentence", () => {
    expect(jobRequest({ ...form, batchSize: "0" })).toEqual({ ok: false, error: "Batch size is a whole number from 1 to 1000." });
    expect(jobRequest({ ...form, maxFailures: "-1" })).toEqual({ ok: false, error: "Abort threshold is a whole number from 0 to 100000." });
    expect(jobRequest({ ...form, selector: "web" })).toEqual({ ok: false, error: 'Label selector: "web" is not key=value.' });
    expect(jobRequest({ ...form, timeout: "x" }).ok).toBe(false);
  });
});

describe("the commands a job runs", () => {
  const form = { name: "shell", selector: "role=web", batchSize: "2", maxFailures: "0", timeout: "" };

  it("are every command the API's jobs accept, terminal aside, shell for admins only", () => {
    // The API's CommandName (arete/commands.py) less `terminal`, which POST /jobs refuses.
    expect(JOB_COMMANDS.map((c) => c.name).sort()).toEqual(
      ["docker_ps", "docker_restart", "metrics", "restart", "screenshot", "shell", "stop"],
    );
    expect(jobCommandsFor("admin").map((c) => c.name)).toContain("shell");
    expect(jobCommandsFor("operator").map((c) => c.name)).not.toContain("shell");
    expect(jobCommandsFor("operator").map((c) => c.name)).toContain("metrics");
    expect(jobCommandsFor("viewer")).toEqual([]);
  });

  it("send a shell line with its time limit", () => {
    expect(jobRequest({ ...form, command: "  uptime ", shellTimeout: "5" })).toEqual({
      ok: true,
      body: { name: "shell", args: { command: "uptime", timeout_s: 5 }, labels: { role: "web" }, batch_size: 2, max_failures: 0 },
    });
    expect(jobRequest({ ...form, command: "df -h" })).toMatchObject({ ok: true, body: { args: { command: "df -h", timeout_s: 30 } } });
  });

  it("refuse a shell job without a line or with a bad time limit", () => {
    expect(jobRequest(form)).toEqual({ ok: false, error: "Type a command to run." });
    expect(jobRequest({ ...form, command: "   " })).toEqual({ ok: false, error: "Type a command to run." });
    expect(jobRequest({ ...form, command: "id", shellTimeout: "0" })).toEqual({ ok: false, error: "The time limit is 1 to 3600 seconds." });
  });

  it("restart a named container, and refuse a name Docker would not take", () => {
    const restart = { ...form, name: "docker_restart" };
    expect(jobRequest({ ...restart, container: " web-1 " })).toMatchObject({ ok: true, body: { args: { container: "web-1" } } });
    expect(jobRequest(restart)).toEqual({ ok: false, error: "Name the container to restart." });
    expect(jobRequest({ ...restart, container: "a b" }).ok).toBe(false);
    expect(jobRequest({ ...restart, container: "-x" }).ok).toBe(false);
  });

  it("refuse a command the jobs do not run", () => {
    expect(jobRequest({ ...form, name: "terminal" })).toEqual({ ok: false, error: "Choose a command." });
  });
});

describe("a job's title", () => {
  it("shows the shell line or the container, unless the arguments are hidden", () => {
    expect(jobTitle({ name: "shell", args: { command: "uptime", timeout_s: 30 } })).toBe('shell "uptime"');
    expect(jobTitle({ name: "shell", args: { argv: ["ls", "-l"] } })).toBe("shell ls -l");
    expect(jobTitle({ name: "shell", args: {}, redacted: true })).toBe("shell");
    expect(jobTitle({ name: "docker_restart", args: { container: "web-1" } })).toBe("docker_restart web-1");
    expect(jobTitle({ name: "metrics", args: {} })).toBe("metrics");
  });
});

describe("rollout jobs", () => {
  const rollout = {
    version: "0.2.0", stage: "batches" as const, batch: 1, batches: 3, canary: 1, health_timeout_s: 180, rollback_on_abort: true,
    phases: { healthy: 2, waiting: 2 }, failures: 0, stop_reason: null,
  };

  it("are titled by their version and summed up by healthy agents", () => {
    const running = job({ kind: "update", name: "update", rollout });
    expect(jobTitle(running)).toBe("update to 0.2.0");
    expect(jobSummary(running)).toBe("running: 2 of 4 healthy");
    const failed = job({ kind: "update", name: "update", state: "failed", stopped_reason: "1 failed, more than max_failures=0", rollout: { ...rollout, stage: "rolling_back" } });
    expect(jobSummary(failed)).toBe("failed: 1 failed, more than max_failures=0 (rolling back)");
    expect(jobSummary({ ...failed, finished_at: 2 })).toBe("failed: 1 failed, more than max_failures=0");
  });
});
