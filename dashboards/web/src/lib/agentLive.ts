// What the agent page says about the freshness of an agent's data, whether commands can
// reach it, and its clock. Pure: "now" and the observed sample interval are passed in.

import { formatOffset } from "./format";
import type { Agent as AgentBase } from "./types";

/** The agent view's fields this page reads beyond the shared type (docs/api.md). */
export type Agent = AgentBase & { clock_offset_s?: number | null; disk_full?: boolean };

/** Data is stale once this many samples are missing. */
export const STALE_SAMPLES = 3;
/** Past this many seconds off, the agent's clock gets a warning badge. */
export const CLOCK_WARN_S = 5;

/** The usual gap between samples in a list of sample times (the median), null under 2. */
export function sampleInterval(ts: readonly number[]): number | null {
  const gaps: number[] = [];
  for (let i = Math.max(1, ts.length - 20); i < ts.length; i++) {
    const gap = ts[i]! - ts[i - 1]!;
    if (gap > 0) gaps.push(gap);
  }
  if (gaps.length === 0) return null;
  gaps.sort((a, b) => a - b);
  return gaps[Math.floor(gaps.length / 2)]!;
}

/** Seconds since the maestro received the agent's last sample (its clock, not the agent's). */
export function dataAge(agent: Agent, nowS: number): number | null {
  const m = agent.metrics;
  if (!m) return null;
  const rx = typeof m.rx_ts === "number" ? m.rx_ts : m.ts - (agent.clock_offset_s ?? 0);
  return Math.max(0, nowS - rx);
}

/**
 * Whether the values shown are stale: the agent is offline, or its last sample is older than
 * STALE_SAMPLES intervals (the observed one, else the heartbeat).
 */
export function isStale(agent: Agent, nowS: number, intervalS: number | null): boolean {
  if (!agent.metrics) return false;
  if (agent.state === "offline" || agent.state === "unknown") return true;
  const age = dataAge(agent, nowS);
  const every = intervalS ?? agent.heartbeat_s ?? 10;
  return age != null && age > STALE_SAMPLES * Math.max(every, 1);
}

/** Why commands cannot reach the agent now, or null when they can. */
export function commandBlock(agent: Agent): string | null {
  switch (agent.state) {
    case "offline":
      return "agent offline";
    case "stopping":
      return "agent stopping";
    case "critical":
      return "agent not responding";
    case "unknown":
      return "agent never connected";
    default:
      return null;
  }
}

/** A warning for a clock off by more than CLOCK_WARN_S, e.g. "clock 2 h ahead"; else null. */
export function clockWarning(offsetS: number | null | undefined): string | null {
  if (offsetS == null || !Number.isFinite(offsetS) || Math.abs(offsetS) <= CLOCK_WARN_S) return null;
  return `clock ${formatOffset(offsetS)}`;
}
