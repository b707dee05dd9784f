// How the fleet page lays agents out: sort keys, grouping by a label, stale data. Pure.

import { isStale as agentDataIsStale } from "./agentLive";
import { stateRank } from "./states";
import type { Agent } from "./types";

export type SortKey = "state" | "id" | "cpu" | "mem" | "disk" | "seen";
export type FleetLayout = "cards" | "table";

export const SORT_KEYS: readonly { key: SortKey; label: string }[] = [
  { key: "state", label: "Trouble first" },
  { key: "id", label: "Name" },
  { key: "cpu", label: "CPU (highest)" },
  { key: "mem", label: "Memory (highest)" },
  { key: "disk", label: "Disk (highest)" },
  { key: "seen", label: "Last seen (oldest)" },
];

export function parseSortKey(value: string | null | undefined): SortKey {
  return SORT_KEYS.some((s) => s.key === value) ? (value as SortKey) : "state";
}

export function parseLayout(value: string | null | undefined): FleetLayout {
  return value === "table" ? "table" : "cards";
}

function metric(agent: Agent, field: "cpu" | "mem" | "disk"): number {
  const v = agent.metrics?.[field];
  return typeof v === "number" && Number.isFinite(v) ? v : -Infinity;
}

/** A new array in the chosen order; ties fall back to trouble first, then id. */
export function sortAgents(agents: readonly Agent[], key: SortKey): Agent[] {
  const byState = (a: Agent, b: Agent) => stateRank(a.state) - stateRank(b.state) || a.id.localeCompare(b.id);
  const compare: Record<SortKey, (a: Agent, b: Agent) => number> = {
    state: byState,
    id: (a, b) => a.id.localeCompare(b.id, undefined, { numeric: true }),
    cpu: (a, b) => metric(b, "cpu") - metric(a, "cpu") || byState(a, b),
    mem: (a, b) => metric(b, "mem") - metric(a, "mem") || byState(a, b),
    disk: (a, b) => metric(b, "disk") - metric(a, "disk") || byState(a, b),
    seen: (a, b) => (a.last_seen ?? -Infinity) - (b.last_seen ?? -Infinity) || byState(a, b),
  };
  return [...agents].sort(compare[key]);
}

/** Every label key any agent carries, sorted. */
export function labelKeys(agents: readonly Agent[]): string[] {
  const keys = new Set<string>();
  for (const a of agents) for (const k of Object.keys(a.labels ?? {})) keys.add(k);
  return [...keys].sort();
}

export interface AgentGroup {
  value: string | null; // null: agents without that label
  title: string;
  agents: Agent[];
}

/**
 * Agents grouped by the value of one label, groups in value order, agents without the
 * label last; the order inside a group is kept. No key: a single group of everything.
 */
export function groupAgents(agents: readonly Agent[], key: string): AgentGroup[] {
  if (!key) return [{ value: null, title: "", agents: [...agents] }];
  const groups = new Map<string | null, Agent[]>();
  for (const a of agents) {
    const v = a.labels?.[key] ?? null;
    groups.set(v, [...(groups.get(v) ?? []), a]);
  }
  return [...groups.entries()]
    .sort(([a], [b]) => (a === null ? 1 : b === null ? -1 : a.localeCompare(b, undefined, { numeric: true })))
    .map(([value, list]) => ({ value, title: value === null ? `no ${key}` : `${key}=${value}`, agents: list }));
}

/**
 * Whether the figures shown are stale (older than STALE_SAMPLES samples, or the agent is
 * offline): the agent page's rule, at the sample interval this page saw live.
 */
export function isStale(agent: Agent, nowS: number): boolean {
  return agentDataIsStale(agent, nowS, agent.sample_s ?? null);
}

export { STALE_SAMPLES } from "./agentLive";
