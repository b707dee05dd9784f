import { describe, expect, it } from "vitest";
import { commandFailure, failureSentence } from "./sentences";
import type { Command } from "./types";

function cmd(over: Partial<Command> = {}): Command {
  return {
    id: "c1", agent: "a", name: "docker_ps", args: {}, state: "failed", actor: "ann", job_id: null,
    timeout_s: 10, created_at: 1, expires_at: 11, updated_at: 1, sent_at: null, accepted_at: null,
    finished_at: 2, result: null, has_result: false, error_code: null, error_message: null, ...over,
  };
}

describe("failure sentences", () => {
  it("keeps a server sentence, capitalised and ended", () => {
    expect(failureSentence("docker_unavailable", "no Docker engine reachable at unix:///x.sock: its socket does not exist (is the engine running?)"))
      .toBe("No Docker engine reachable at unix:///x.sock: its socket does not exist (is the engine running?).");
  });

  it("never shows an exception repr or a traceback", () => {
    const raw = "Error while fetching server API version: ('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))";
    expect(failureSentence("docker_unavailable", raw)).toBe("Docker is not available on this agent.");
    expect(failureSentence("internal", "Traceback (most recent call last):\n  File ...")).toBe(
      "The agent hit an unexpected error (its log has the details).",
    );
    expect(failureSentence("weird", "KeyError('x')")).toBe("The command failed.");
  });

  it("says what a bare code means", () => {
    expect(failureSentence("timed_out", null)).toBe("The agent did not answer in time.");
  });

  it("is null for commands that worked or still run", () => {
    expect(commandFailure(cmd({ state: "ok" }))).toBeNull();
    expect(commandFailure(cmd({ state: "running" }))).toBeNull();
    expect(commandFailure(cmd({ state: "timed_out" }))).toBe("The agent did not answer in time.");
    expect(commandFailure(cmd({ error_code: "not_found", error_message: "no container named or with id 'x'" })))
      .toBe("No container named or with id 'x'.");
  });
});
