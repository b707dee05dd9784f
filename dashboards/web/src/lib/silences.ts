import type { Silence } from "./types";

/** What a silence mutes, in words: "agent_offline on a1", "every rule on a1", "cpu_high on every agent". */
export function silenceScope(s: Pick<Silence, "agent" | "rule">): string {
  const rule = s.rule ?? "every rule";
  const agent = s.agent ?? "every agent";
  return `${rule} on ${agent}`;
}

/**
 * The silences of a `GET /silences` answer still in force at `nowS` (unix seconds), the
 * soonest to end first. Only the end is checked: the page's clock may lag a few seconds
 * behind a silence the server started a moment ago.
 */
export function silencesInForce(silences: Silence[], nowS: number): Silence[] {
  return silences
    .filter((s) => s.ended_at == null && s.ends_at > nowS)
    .sort((a, b) => a.ends_at - b.ends_at);
}

/** Whether `s` mutes the alert of `rule` on `agent` (a missing agent or rule matches every one),
 * as `Silence.matches` in maestro/alerts/model.py decides it on the server. */
export function silenceMatches(s: Pick<Silence, "agent" | "rule">, agent: string, rule: string): boolean {
  return (s.agent == null || s.agent === agent) && (s.rule == null || s.rule === rule);
}
