import { formatAgo, formatLabels, formatPercent } from "../lib/format";
import { isStale, STALE_SAMPLES } from "../lib/fleetView";
import { agentStateStyle } from "../lib/states";
import type { Agent } from "../lib/types";
import { StateBadge } from "./StateBadge";

export function staleTitle(agent: Agent, now: number): string {
  return `Last sample ${formatAgo(agent.metrics?.ts, now)}: more than ${STALE_SAMPLES} samples missed, the figures are old`;
}

export function StaleMark({ agent, now }: { agent: Agent; now: number }) {
  if (!isStale(agent, now)) return null;
  return (
    <span
      data-testid={`agent-stale-${agent.id}`}
      title={staleTitle(agent, now)}
      className="rounded border border-amber-600 px-1.5 text-[11px] font-medium uppercase tracking-wide text-amber-300"
    >
      stale
    </span>
  );
}

function Gauge({ label, value, testId, stale }: { label: string; value: number | null | undefined; testId: string; stale: boolean }) {
  const pct = value == null || !Number.isFinite(value) ? 0 : Math.min(100, Math.max(0, value));
  const colour = stale ? "bg-slate-600" : pct >= 90 ? "bg-red-500" : pct >= 75 ? "bg-amber-400" : "bg-sky-500";
  return (
    <div>
      <div className="flex justify-between text-xs">
        <span className="text-slate-400">{label}</span>
        <span className={`tabular-nums ${stale ? "text-slate-500" : "text-slate-200"}`} data-testid={testId}>
          {formatPercent(value)}
        </span>
      </div>
      <div className="mt-1 h-1.5 rounded bg-slate-800">
        <div className={`h-1.5 rounded ${colour}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

export function AgentAlerts({ agent }: { agent: Agent }) {
  const alerts = agent.alerts ?? 0;
  if (alerts <= 0) return null;
  return (
    <span
      data-testid={`agent-alerts-${agent.id}`}
      className="rounded-full bg-red-600 px-2 text-xs font-semibold text-white"
      title={`${alerts} open alert${alerts === 1 ? "" : "s"}`}
    >
      {alerts}
    </span>
  );
}

export function AgentCard({ agent, now }: { agent: Agent; now: number }) {
  const style = agentStateStyle(agent.state);
  const m = agent.metrics;
  const stale = isStale(agent, now);
  const dim = agent.state === "offline" ? "opacity-60" : "";
  return (
    <a
      href={`#/agents/${encodeURIComponent(agent.id)}`}
      data-testid={`agent-card-${agent.id}`}
      data-state={agent.state}
      data-stale={stale}
      className={`block min-w-0 rounded-lg border-l-4 border border-slate-800 bg-slate-900 p-4 hover:bg-slate-800/70 ${style.border} ${dim}`}
    >
      <div className="mb-1 flex items-center gap-2">
        <span className="truncate font-medium text-slate-100" title={agent.id}>{agent.id}</span>
        <AgentAlerts agent={agent} />
        <span className="ml-auto flex items-center gap-2">
          <StaleMark agent={agent} now={now} />
          <StateBadge state={agent.state} testId={`agent-state-${agent.id}`} />
        </span>
      </div>
      <div className="mb-3 flex justify-between gap-2 text-xs text-slate-400">
        <span className="truncate">{agent.host ?? "—"}</span>
        <span className="shrink-0" data-testid={`agent-last-seen-${agent.id}`}>{formatAgo(agent.last_seen, now)}</span>
      </div>
      <div className="space-y-2">
        <Gauge label="CPU" value={m?.cpu} testId={`agent-cpu-${agent.id}`} stale={stale} />
        <Gauge label="Memory" value={m?.mem} testId={`agent-mem-${agent.id}`} stale={stale} />
        <Gauge label="Disk" value={m?.disk} testId={`agent-disk-${agent.id}`} stale={stale} />
      </div>
      {formatLabels(agent.labels).length > 0 && (
        <div className="mt-3 flex flex-wrap gap-1">
          {formatLabels(agent.labels).map((l) => (
            <span key={l} className="max-w-full truncate rounded bg-slate-800 px-1.5 py-0.5 text-[11px] text-slate-300">{l}</span>
          ))}
        </div>
      )}
    </a>
  );
}
