// Agent liveness and command states → colours and words. Pure.

export interface StateStyle {
  label: string;
  dot: string; // Tailwind class of the state dot
  text: string; // Tailwind class of the state word
  border: string; // Tailwind class of the card's border
}

const AGENT_STATES: Record<string, StateStyle> = {
  online: { label: "online", dot: "bg-emerald-500", text: "text-emerald-400", border: "border-emerald-700" },
  late: { label: "late", dot: "bg-amber-400", text: "text-amber-300", border: "border-amber-600" },
  critical: { label: "critical", dot: "bg-red-500", text: "text-red-400", border: "border-red-600" },
  stopping: { label: "stopping", dot: "bg-slate-400", text: "text-slate-300", border: "border-slate-500" },
  offline: { label: "offline", dot: "bg-slate-700", text: "text-slate-500", border: "border-slate-800" },
};

const UNKNOWN: StateStyle = {
  label: "unknown", dot: "bg-slate-600", text: "text-slate-400", border: "border-slate-700",
};

export function agentStateStyle(state: string): StateStyle {
  return AGENT_STATES[state] ?? { ...UNKNOWN, label: state || "unknown" };
}

/** Order of states when sorting the fleet: trouble first, then the healthy, then gone. */
export const STATE_ORDER: readonly string[] = ["critical", "late", "online", "stopping", "offline", "unknown"];

export function stateRank(state: string): number {
  const i = STATE_ORDER.indexOf(state);
  return i < 0 ? STATE_ORDER.length : i;
}

export const FINAL_COMMAND_STATES: ReadonlySet<string> = new Set([
  "ok", "failed", "rejected", "expired", "timed_out",
]);

export function isFinalCommandState(state: string): boolean {
  return FINAL_COMMAND_STATES.has(state);
}

/** Tailwind text class of a command state: green done, red failed, amber pending. */
export function commandStateClass(state: string): string {
  if (state === "ok") return "text-emerald-400";
  if (FINAL_COMMAND_STATES.has(state)) return "text-red-400";
  return "text-amber-300";
}

export function alertSeverityClass(severity: string): string {
  if (severity === "critical") return "bg-red-600 text-white";
  if (severity === "warning") return "bg-amber-500 text-slate-950";
  return "bg-sky-700 text-white";
}
