import { useEffect, useMemo, useState } from "react";
import { StateBadge } from "../components/StateBadge";
import { useApp, useNow } from "../context";
import { countByState, visibleAgents } from "../lib/fleet";
import { formatAgo, formatLabels, formatPercent } from "../lib/format";
import { agentStateStyle, STATE_ORDER } from "../lib/states";
import type { Agent } from "../lib/types";

const LIVE_CARDS = 100; // metric streams asked for at most this many visible cards

export function FleetPage() {
  const { fleet, live } = useApp();
  const [state, setState] = useState("");
  const [text, setText] = useState("");
  const now = useNow();
  const agents = useMemo(() => visibleAgents(fleet, { state, text }), [fleet, state, text]);
  const counts = useMemo(() => countByState(fleet), [fleet]);
  const total = Object.keys(fleet.agents).length;

  const liveIds = agents.slice(0, LIVE_CARDS).map((a) => a.id).join("\n");
  useEffect(() => (liveIds ? live.subscribe(liveIds.split("\n")) : undefined), [live, liveIds]);

  return (
    <div>
      <div className="mb-5 flex flex-wrap items-center gap-3">
        <h1 className="mr-4 text-xl font-semibold text-slate-100">Fleet</h1>
        <div className="flex flex-wrap gap-1" role="group" aria-label="Filter by state">
          <FilterChip active={state === ""} onClick={() => setState("")} testId="filter-state-all">
            all <span className="text-slate-400">{total}</span>
          </FilterChip>
          {STATE_ORDER.filter((s) => s !== "unknown" || counts[s]).map((s) => (
            <FilterChip key={s} active={state === s} onClick={() => setState(s)} testId={`filter-state-${s}`}>
              <span className={`inline-block h-2 w-2 rounded-full ${agentStateStyle(s).dot}`} /> {s}{" "}
              <span className="text-slate-400">{counts[s] ?? 0}</span>
            </FilterChip>
          ))}
        </div>
        <input
          type="search"
          placeholder="Search id, host, label…"
          value={text}
          onChange={(e) => setText(e.target.value)}
          data-testid="fleet-search"
          className="ml-auto w-72 rounded border border-slate-700 bg-slate-900 px-3 py-1.5 text-sm text-slate-100 outline-none focus:border-sky-500"
        />
      </div>
      {!fleet.loaded ? (
        <p className="text-slate-400" data-testid="fleet-loading">Loading agents…</p>
      ) : agents.length === 0 ? (
        <p className="text-slate-400" data-testid="fleet-empty">
          {total === 0 ? "No agent has reported yet." : "No agent matches the filter."}
        </p>
      ) : (
        <div className="grid gap-3 [grid-template-columns:repeat(auto-fill,minmax(280px,1fr))]" data-testid="fleet-grid">
          {agents.map((a) => (
            <AgentCard key={a.id} agent={a} now={now} />
          ))}
        </div>
      )}
    </div>
  );
}

function FilterChip({
  active, onClick, testId, children,
}: { active: boolean; onClick: () => void; testId: string; children: React.ReactNode }) {
  return (
    <button
      type="button"
      onClick={onClick}
      data-testid={testId}
      aria-pressed={active}
      className={`flex items-center gap-1.5 rounded-full border px-3 py-1 text-xs ${active ? "border-sky-500 bg-sky-950 text-sky-100" : "border-slate-700 text-slate-300 hover:bg-slate-800"}`}
    >
      {children}
    </button>
  );
}

function Gauge({ label, value, testId }: { label: string; value: number | null | undefined; testId: string }) {
  const pct = value == null || !Number.isFinite(value) ? 0 : Math.min(100, Math.max(0, value));
  const colour = pct >= 90 ? "bg-red-500" : pct >= 75 ? "bg-amber-400" : "bg-sky-500";
  return (
    <div>
      <div className="flex justify-between text-xs">
        <span className="text-slate-400">{label}</span>
        <span className="tabular-nums text-slate-200" data-testid={testId}>{formatPercent(value)}</span>
      </div>
      <div className="mt-1 h-1.5 rounded bg-slate-800">
        <div className={`h-1.5 rounded ${colour}`} style={{ width: `${pct}%` }} />
      </div>
    </div>
  );
}

function AgentCard({ agent, now }: { agent: Agent; now: number }) {
  const style = agentStateStyle(agent.state);
  const m = agent.metrics;
  const dim = agent.state === "offline" ? "opacity-60" : "";
  const alerts = agent.alerts ?? 0;
  return (
    <a
      href={`#/agents/${encodeURIComponent(agent.id)}`}
      data-testid={`agent-card-${agent.id}`}
      data-state={agent.state}
      className={`block rounded-lg border-l-4 border border-slate-800 bg-slate-900 p-4 hover:bg-slate-800/70 ${style.border} ${dim}`}
    >
      <div className="mb-1 flex items-center gap-2">
        <span className="truncate font-medium text-slate-100" title={agent.id}>{agent.id}</span>
        {alerts > 0 && (
          <span
            data-testid={`agent-alerts-${agent.id}`}
            className="rounded-full bg-red-600 px-2 text-xs font-semibold text-white"
            title={`${alerts} open alert${alerts === 1 ? "" : "s"}`}
          >
            {alerts}
          </span>
        )}
        <span className="ml-auto">
          <StateBadge state={agent.state} testId={`agent-state-${agent.id}`} />
        </span>
      </div>
      <div className="mb-3 flex justify-between text-xs text-slate-400">
        <span className="truncate">{agent.host ?? "—"}</span>
        <span data-testid={`agent-last-seen-${agent.id}`}>{formatAgo(agent.last_seen, now)}</span>
      </div>
      <div className="space-y-2">
        <Gauge label="CPU" value={m?.cpu} testId={`agent-cpu-${agent.id}`} />
        <Gauge label="Memory" value={m?.mem} testId={`agent-mem-${agent.id}`} />
        <Gauge label="Disk" value={m?.disk} testId={`agent-disk-${agent.id}`} />
      </div>
      {formatLabels(agent.labels).length > 0 && (
        <div className="mt-3 flex flex-wrap gap-1">
          {formatLabels(agent.labels).map((l) => (
            <span key={l} className="rounded bg-slate-800 px-1.5 py-0.5 text-[11px] text-slate-300">{l}</span>
          ))}
        </div>
      )}
    </a>
  );
}
