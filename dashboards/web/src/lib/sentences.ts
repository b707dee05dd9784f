// What a user reads when something failed: a sentence, never an exception's repr. Pure.

import type { Command } from "./types";

/** Looks like a programmer's text (a repr, a traceback) rather than a sentence. */
const REPR = /(Traceback \(most recent call last\)|\b[A-Z]\w*(Error|Exception)\(|<\w+[ .]\w+ object at 0x)/;

const BY_CODE: Record<string, string> = {
  docker_unavailable: "Docker is not available on this agent.",
  docker_error: "The Docker engine refused the request.",
  not_found: "No such container on this agent.",
  not_allowed: "This agent does not allow that command.",
  timeout: "The agent did not answer in time.",
  timed_out: "The agent did not answer in time.",
  busy: "The agent is busy with other commands; try again shortly.",
  expired: "The command expired before the agent could run it.",
  internal: "The agent hit an unexpected error (its log has the details).",
  offline: "The agent is offline.",
};

function capitalised(text: string): string {
  const t = text.trim();
  if (!t) return t;
  const first = t[0]!.toUpperCase() + t.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

/** A failure message as one readable sentence: the server's own text when it is one,
 * else what its error code means. */
export function failureSentence(code: string | null | undefined, message: string | null | undefined): string {
  const text = (message ?? "").trim();
  if (text && !REPR.test(text)) return capitalised(text);
  if (code && BY_CODE[code]) return BY_CODE[code]!;
  return "The command failed.";
}

/** A finished command that did not succeed, as a sentence; null while it runs or when it worked. */
export function commandFailure(command: Command | null | undefined): string | null {
  if (!command || command.state === "ok") return null;
  if (!["failed", "rejected", "timed_out", "expired"].includes(command.state)) return null;
  return failureSentence(command.error_code ?? command.state, command.error_message);
}
