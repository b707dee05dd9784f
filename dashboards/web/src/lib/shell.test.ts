import { describe, expect, it } from "vitest";
import { shellOutput, shellRequest } from "./shell";
import type { Command } from "./types";

function cmd(over: Partial<Command> = {}): Command {
  return {
    id: "c1", agent: "a", name: "shell", args: {}, state: "ok", actor: "ann", job_id: null,
    timeout_s: 45, created_at: 1, expires_at: 46, updated_at: 2, sent_at: 1, accepted_at: 1,
    finished_at: 2, result: null, has_result: true, error_code: null, error_message: null, ...over,
  };
}

describe("the shell request", () => {
  it("runs the line with sh -c within its time limit", () => {
    expect(shellRequest(" uptime ", "")).toEqual({
      ok: true, body: { name: "shell", args: { command: "uptime", timeout_s: 30 } },
    });
    expect(shellRequest("df -h", "120")).toMatchObject({ ok: true, body: { args: { timeout_s: 120 } } });
  });

  it("refuses an empty line or a bad limit with a sentence", () => {
    expect(shellRequest("  ", "")).toEqual({ ok: false, error: "Type a command to run." });
    expect(shellRequest("ls", "0")).toEqual({ ok: false, error: "The time limit is 1 to 3600 seconds." });
    expect(shellRequest("ls", "abc").ok).toBe(false);
  });
});

describe("the shell output", () => {
  it("shows stdout, stderr, the exit code and why it may be partial", () => {
    const c = cmd({ result: { exit_code: 1, stdout: "a\n", stderr: "oops\n", truncated: true, timed_out: false, duration_s: 0.1 } });
    expect(shellOutput(c)).toEqual({ exitCode: 1, stdout: "a\n", stderr: "oops\n", note: "output truncated" });
    const killed = cmd({ result: { exit_code: null, stdout: "", stderr: "", timed_out: true, duration_s: 30 } });
    expect(shellOutput(killed)?.note).toBe("killed at its time limit");
    const failed = cmd({ state: "failed", error_code: "exit_status", result: { exit_code: 3, stdout: "x", stderr: "", duration_s: 0 } });
    expect(shellOutput(failed)?.exitCode).toBe(3);
  });

  it("is null for other commands, unfinished ones and hidden results", () => {
    expect(shellOutput(cmd({ name: "metrics", result: { stdout: "x" } }))).toBeNull();
    expect(shellOutput(cmd({ state: "running", result: null }))).toBeNull();
    expect(shellOutput(cmd({ result: null }))).toBeNull();
  });
});
