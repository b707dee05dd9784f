// The fleet as the dashboard knows it, and how live events change it. Pure reducer.

import { formatLabels } from "./format";
import { stateRank } from "./states";
import type { Agent, LiveEvent, MetricsFrame } from "./types";

export interface FleetState {
  agents: Record<string, Agent>;
  loaded: boolean;
}

export type FleetAction =
  | { type: "loaded"; agents: Agent[] }
  | { type: "event"; event: LiveEvent }
  | { type: "reset" };

export const EMPTY_FLEET: FleetState = { agents: {}, loaded: false };

function isAgent(data: unknown): data is Agent {
  return typeof data === "object" && data !== null && typeof (data as { id?: unknown }).id === "string";
}

function isMetricsFrame(data: unknown): data is MetricsFrame {
  const d = data as Partial<MetricsFrame> | null;
  return (
    typeof d === "object" && d !== null && typeof d.agent === "string" &&
    typeof d.ts === "number" && typeof d.values === "object" && d.values !== null
  );
}

/** Apply one `/ws` event; events of other kinds, or malformed ones, change nothing. */
export function applyEvent(state: FleetState, event: LiveEvent): FleetState {
  if (event.kind === "agent" && isAgent(event.data)) {
    const { old: _old, ...view } = event.data as Agent & { old?: unknown };
    const before = state.agents[view.id];
    // A status event carries no alert count; keep the one we had.
    const merged: Agent = { ...before, ...view, alerts: view.alerts ?? before?.alerts ?? 0 };
    return { ...state, agents: { ...state.agents, [view.id]: merged } };
  }
  if (event.kind === "agent_removed" && isAgent(event.data)) {
    // `arete agents remove`: the maestro forgot it; so does the fleet view.
    const id = (event.data as { id: string }).id;
    if (!(id in state.agents)) return state;
    const { [id]: _gone, ...agents } = state.agents;
    return { ...state, agents };
  }
  if (event.kind === "metrics" && isMetricsFrame(event.data)) {
    const frame = event.data;
    const agent = state.agents[frame.agent];
    if (!agent) return state;
    if (agent.metrics && agent.metrics.ts > frame.ts) return state; // older than what we show
    const metrics = { ...agent.metrics, ...frame.values, ts: frame.ts };
    const lastSeen = Math.max(agent.last_seen ?? 0, frame.ts);
    const gap = agent.metrics ? frame.ts - agent.metrics.ts : 0;
    const sample_s = gap > 0 ? gap : agent.sample_s;
    return {
      ...state,
      agents: { ...state.agents, [frame.agent]: { ...agent, metrics, last_seen: lastSeen, sample_s } },
    };
  }
  return state;
}

export function fleetReducer(state: FleetState, action: FleetAction): FleetState {
  switch (action.type) {
    case "loaded":
      return {
        loaded: true,
        // The sample interval is learnt from live frames: a reload keeps it.
        agents: Object.fromEntries(
          action.agents.map((a) => [a.id, { ...a, sample_s: a.sample_s ?? state.agents[a.id]?.sample_s }]),
        ),
      };
    case "event":
      return applyEvent(state, action.event);
    case "reset":
      return EMPTY_FLEET;
  }
}

export interface FleetFilter {
  state: string; // "" = every state
  text: string;
}

/** Whether the agent's id, host or any `k=v` label contains every word of `text`. */
export function matchesText(agent: Agent, text: string): boolean {
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length === 0) return true;
  const haystack = [agent.id, agent.host ?? "", ...formatLabels(agent.labels)].join(" ").toLowerCase();
  return words.every((w) => haystack.includes(w));
}

/** Agents passing the filter: trouble first, then by id. */
export function visibleAgents(state: FleetState, filter: FleetFilter): Agent[] {
  return Object.values(state.agents)
    .filter((a) => (filter.state ? a.state === filter.state : true) && matchesText(a, filter.text))
    .sort((a, b) => stateRank(a.state) - stateRank(b.state) || a.id.localeCompare(b.id));
}

/** How many agents are in each state, for the filter chips. */
export function countByState(state: FleetState): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const a of Object.values(state.agents)) counts[a.state] = (counts[a.state] ?? 0) + 1;
  return counts;
}
