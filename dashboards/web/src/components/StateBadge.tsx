import { agentStateStyle } from "../lib/states";

export function StateBadge({ state, testId }: { state: string; testId?: string }) {
  const s = agentStateStyle(state);
  return (
    <span className={`inline-flex items-center gap-1.5 text-xs font-medium ${s.text}`} data-testid={testId} data-state={state}>
      <span className={`inline-block h-2.5 w-2.5 rounded-full ${s.dot}`} />
      {s.label}
    </span>
  );
}
