// The shell command from the agent page: the request, and what its result shows. Pure.

import type { Command } from "./types";

export type ShellRequest =
  | { ok: true; body: { name: "shell"; args: { command: string; timeout_s: number } } }
  | { ok: false; error: string };

/** POST /agents/{id}/command body for a `/bin/sh -c` line, or what is wrong (a sentence). */
export function shellRequest(line: string, timeoutText: string): ShellRequest {
  const command = line.trim();
  if (!command) return { ok: false, error: "Type a command to run." };
  if (command.length > 4096) return { ok: false, error: "The command is longer than 4096 characters." };
  const timeout = Number(timeoutText.trim() || "30");
  if (!Number.isFinite(timeout) || timeout <= 0 || timeout > 3600) {
    return { ok: false, error: "The time limit is 1 to 3600 seconds." };
  }
  // No record lifetime given: the maestro's default for shell outlasts its time limit.
  return { ok: true, body: { name: "shell", args: { command, timeout_s: timeout } } };
}

export interface ShellOutput {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  note: string; // "", "output truncated", "killed at its time limit"
}

/** A finished shell command's output (a non-zero exit fails the command but keeps its
 * output), or null (not a shell command, no result yet, hidden). */
export function shellOutput(command: Command | null | undefined): ShellOutput | null {
  if (!command || command.name !== "shell") return null;
  const r = command.result;
  if (typeof r !== "object" || r === null || Array.isArray(r)) return null;
  const rec = r as Record<string, unknown>;
  if (typeof rec.stdout !== "string" && typeof rec.stderr !== "string") return null;
  const notes = [];
  if (rec.timed_out === true) notes.push("killed at its time limit");
  if (rec.truncated === true) notes.push("output truncated");
  return {
    exitCode: typeof rec.exit_code === "number" ? rec.exit_code : null,
    stdout: typeof rec.stdout === "string" ? rec.stdout : "",
    stderr: typeof rec.stderr === "string" ? rec.stderr : "",
    note: notes.join(", "),
  };
}
