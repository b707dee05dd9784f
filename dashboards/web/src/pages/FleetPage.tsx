import { useEffect, useMemo, useState } from "react";
import { AgentCard } from "../components/AgentCard";
import { FleetTable } from "../components/FleetTable";
import { useApp, useNow } from "../context";
import { countByState, visibleAgents } from "../lib/fleet";
import { groupAgents, labelKeys, parseLayout, parseSortKey, sortAgents, SORT_KEYS } from "../lib/fleetView";
import { agentStateStyle, STATE_ORDER } from "../lib/states";
import { useStored } from "../useStored";

const LIVE_AGENTS = 100; // metric streams asked for at most this many visible agents

const CONTROL = "rounded border border-slate-700 bg-slate-900 px-2 py-1.5 text-sm text-slate-100 outline-none focus:border-sky-500";

export function FleetPage() {
  const { fleet, live } = useApp();
  const [state, setState] = useState("");
  const [text, setText] = useState("");
  const [sort, setSort] = useStored("arete.fleet.sort", parseSortKey);
  const [layout, setLayout] = useStored("arete.fleet.layout", parseLayout);
  const [group, setGroup] = useStored("arete.fleet.group", (raw) => raw ?? "");
  const now = useNow();
  const all = useMemo(() => Object.values(fleet.agents), [fleet]);
  const keys = useMemo(() => labelKeys(all), [all]);
  const groupKey = keys.includes(group) ? group : "";
  const agents = useMemo(() => sortAgents(visibleAgents(fleet, { state, text }), sort), [fleet, state, text, sort]);
  const groups = useMemo(() => groupAgents(agents, groupKey), [agents, groupKey]);
  const counts = useMemo(() => countByState(fleet), [fleet]);
  const total = all.length;

  const shown = groups.flatMap((g) => g.agents);
  const liveIds = shown.slice(0, LIVE_AGENTS).map((a) => a.id).join("\n");
  useEffect(() => (liveIds ? live.subscribe(liveIds.split("\n")) : undefined), [live, liveIds]);

  return (
    <div>
      <div className="mb-3 flex flex-wrap items-center gap-3">
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
          className={`w-full sm:ml-auto sm:w-72 ${CONTROL} px-3`}
        />
      </div>
      <div className="mb-5 flex flex-wrap items-center gap-x-4 gap-y-2 text-sm text-slate-400">
        <label className="flex items-center gap-2">
          Sort
          <select value={sort} onChange={(e) => setSort(parseSortKey(e.target.value))} data-testid="fleet-sort" className={CONTROL}>
            {SORT_KEYS.map((s) => <option key={s.key} value={s.key}>{s.label}</option>)}
          </select>
        </label>
        <label className="flex items-center gap-2">
          Group by
          <select value={groupKey} onChange={(e) => setGroup(e.target.value)} data-testid="fleet-group-by" className={CONTROL}>
            <option value="">nothing</option>
            {keys.map((k) => <option key={k} value={k}>label {k}</option>)}
          </select>
        </label>
        <div className="flex gap-1 sm:ml-auto" role="group" aria-label="View">
          {(["cards", "table"] as const).map((v) => (
            <FilterChip key={v} active={layout === v} onClick={() => setLayout(v)} testId={`fleet-view-${v}`}>
              {v === "cards" ? "Cards" : "Table"}
            </FilterChip>
          ))}
        </div>
      </div>
      {!fleet.loaded ? (
        <p className="text-slate-400" data-testid="fleet-loading">Loading agents…</p>
      ) : agents.length === 0 ? (
        <p className="text-slate-400" data-testid="fleet-empty">
          {total === 0 ? "No agent has reported yet." : "No agent matches the filter."}
        </p>
      ) : (
        <div className="space-y-6" data-testid="fleet-view" data-layout={layout}>
          {groups.map((g) => (
            <section key={g.title || "all"} data-testid="fleet-group" data-group={g.title}>
              {g.title && (
                <h2 className="mb-2 text-sm font-semibold text-slate-300">
                  {g.title} <span className="font-normal text-slate-500">{g.agents.length}</span>
                </h2>
              )}
              {layout === "table" ? (
                <FleetTable agents={g.agents} now={now} testId="fleet-table" />
              ) : (
                <div className="grid gap-3 [grid-template-columns:repeat(auto-fill,minmax(min(280px,100%),1fr))]" data-testid="fleet-grid">
                  {g.agents.map((a) => <AgentCard key={a.id} agent={a} now={now} />)}
                </div>
              )}
            </section>
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
