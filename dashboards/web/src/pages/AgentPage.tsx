import { useCallback, useEffect, useState } from "react";
import { HistoryCharts, LiveCharts } from "../components/AgentCharts";
import { CommandPanel } from "../components/CommandPanel";
import { ConfirmDialog, type ConfirmRequest } from "../components/ConfirmDialog";
import { MoreCommands } from "../components/MoreCommands";
import { StateBadge } from "../components/StateBadge";
import { Terminal } from "../components/Terminal";
import { useApp, useNow } from "../context";
import { type Agent, clockWarning, commandBlock, dataAge, isStale } from "../lib/agentLive";
import { ApiError, errorText, get } from "../lib/api";
import { roleAllows } from "../lib/commands";
import {
  formatAgo, formatCount, formatDuration, formatLabels, formatPercent, formatRate, formatUptime,
} from "../lib/format";
import { routeHash, type AgentTab } from "../lib/router";
import { useCommand } from "../useCommand";
import { ContainersTab } from "./ContainersTab";

const CLOCK_REFRESH_MS = 15_000;

export function AgentPage({ id, tab }: { id: string; tab: AgentTab }) {
  const { fleet, me } = useApp();
  const [fetched, setFetched] = useState<Agent | null>(null);
  const [missing, setMissing] = useState("");
  const now = useNow();

  useEffect(() => {
    let cancelled = false;
    // Again every 15 s: the clock offset and disk_full change with no live event carrying them.
    const load = () =>
      get<Agent>(`/agents/${encodeURIComponent(id)}`)
        .then((a) => !cancelled && setFetched(a))
        .catch((exc: unknown) =>
          !cancelled && setMissing(exc instanceof ApiError && exc.status === 404 ? `No agent "${id}".` : errorText(exc)),
        );
    void load();
    const timer = setInterval(() => void load(), CLOCK_REFRESH_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [id]);

  const live: Agent | undefined = fleet.agents[id];
  const agent: Agent | null = live
    ? { ...live, clock_offset_s: fetched?.clock_offset_s ?? live.clock_offset_s, disk_full: fetched?.disk_full ?? live.disk_full }
    : fetched;
  if (!agent) {
    return <p className="text-slate-400" data-testid="agent-missing">{missing || "Loading…"}</p>;
  }
  const tabs: { key: AgentTab; label: string }[] = [
    { key: "overview", label: "Overview" },
    ...(roleAllows(me.role, "operator") ? [{ key: "containers" as const, label: "Containers" }] : []),
    ...(roleAllows(me.role, "admin") ? [{ key: "terminal" as const, label: "Terminal" }] : []),
  ];
  return (
    <div data-testid="agent-page" data-agent={id}>
      <div className="mb-4 flex flex-wrap items-center gap-4">
        <a href="#/" className="text-sm text-slate-400 hover:text-slate-200">← Fleet</a>
        <h1 className="text-xl font-semibold text-slate-100" data-testid="agent-title">{agent.id}</h1>
        <StateBadge state={agent.state} testId="agent-state" />
        <span className="text-sm text-slate-400">{agent.host ?? "—"}</span>
        <span className="text-sm text-slate-500">v{agent.version ?? "?"}</span>
        <span className="text-sm text-slate-400" data-testid="agent-last-seen">
          seen {formatAgo(agent.last_seen, now)}
        </span>
        {agent.reason && <span className="text-sm text-slate-500">({agent.reason})</span>}
        {clockWarning(agent.clock_offset_s) && (
          <span
            className="rounded bg-amber-900/60 px-1.5 py-0.5 text-xs font-medium text-amber-200"
            data-testid="agent-clock"
            title="The agent's clock minus the maestro's, measured from live samples"
          >
            {clockWarning(agent.clock_offset_s)}
          </span>
        )}
        {agent.disk_full && (
          <span
            className="rounded bg-red-900/60 px-1.5 py-0.5 text-xs font-medium text-red-200"
            data-testid="agent-disk-full"
            title="The agent's state disk is full: it keeps no more samples while offline"
          >
            state disk full
          </span>
        )}
        <div className="flex flex-wrap gap-1">
          {formatLabels(agent.labels).map((l) => (
            <span key={l} className="rounded bg-slate-800 px-1.5 py-0.5 text-xs text-slate-300">{l}</span>
          ))}
        </div>
      </div>
      <div className="mb-5 flex gap-1 border-b border-slate-800">
        {tabs.map((t) => (
          <a
            key={t.key}
            href={routeHash({ page: "agent", id, tab: t.key })}
            data-testid={`tab-${t.key}`}
            className={`-mb-px border-b-2 px-4 py-2 text-sm ${tab === t.key ? "border-sky-500 text-slate-100" : "border-transparent text-slate-400 hover:text-slate-200"}`}
          >
            {t.label}
          </a>
        ))}
      </div>
      {tab === "terminal" && roleAllows(me.role, "admin") ? (
        <Terminal agent={id} />
      ) : tab === "containers" && roleAllows(me.role, "operator") ? (
        <ContainersTab agent={id} />
      ) : (
        <Overview agent={agent} />
      )}
    </div>
  );
}

function MetricValue({
  label, value, testId, stale,
}: { label: string; value: string; testId: string; stale: boolean }) {
  return (
    <div className="rounded-lg border border-slate-800 bg-slate-900 px-4 py-3" data-stale={stale}>
      <div className="text-xs text-slate-400">{label}</div>
      <div
        className={`text-xl font-semibold tabular-nums ${stale ? "text-slate-500 line-through decoration-slate-600" : "text-slate-100"}`}
        data-testid={testId}
        data-stale={stale}
      >
        {value}
      </div>
    </div>
  );
}

function Overview({ agent }: { agent: Agent }) {
  const { live, me } = useApp();
  const run = useCommand(live);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const [interval, setIntervalS] = useState<number | null>(null);
  const onInterval = useCallback((s: number | null) => setIntervalS(s), []);
  const now = useNow();
  const m = agent.metrics;
  const stale = isStale(agent, now, interval);
  const age = dataAge(agent, now);
  const blocked = commandBlock(agent);

  function ask(name: "restart" | "stop" | "screenshot") {
    const texts = {
      restart: { title: `Restart ${agent.id}?`, body: "The agent process exits and its supervisor starts it again.", danger: true },
      stop: { title: `Stop ${agent.id}?`, body: "The agent process exits and stays stopped until someone starts it.", danger: true },
      screenshot: { title: `Screenshot of ${agent.id}?`, body: "The agent captures its screen and sends the image.", danger: false },
    }[name];
    setConfirm({
      ...texts,
      confirmLabel: name[0]!.toUpperCase() + name.slice(1),
      onConfirm: () => void run.start(`/agents/${encodeURIComponent(agent.id)}/${name}`),
    });
  }

  return (
    <div className="space-y-6">
      {stale && (
        <p className="rounded border border-amber-800 bg-amber-950/40 px-3 py-2 text-sm text-amber-200" data-testid="metrics-stale">
          Stale: these are the last values received, {age == null ? "a while" : formatDuration(age)} ago
          {agent.state === "offline" ? " (the agent is offline)" : ""}.
        </p>
      )}
      <div className="grid grid-cols-2 gap-3 md:grid-cols-3 lg:grid-cols-5 xl:grid-cols-9">
        <MetricValue label="CPU" value={formatPercent(m?.cpu)} testId="metric-cpu" stale={stale} />
        <MetricValue label="Memory" value={formatPercent(m?.mem)} testId="metric-mem" stale={stale} />
        <MetricValue label="Swap" value={formatPercent(m?.swap)} testId="metric-swap" stale={stale} />
        <MetricValue label="Disk" value={formatPercent(m?.disk)} testId="metric-disk" stale={stale} />
        <MetricValue label="Load (1 min)" value={m?.load1 == null ? "—" : m.load1.toFixed(2)} testId="metric-load1" stale={stale} />
        <MetricValue label="Net in" value={formatRate(m?.net_rx_bps)} testId="metric-net-rx" stale={stale} />
        <MetricValue label="Net out" value={formatRate(m?.net_tx_bps)} testId="metric-net-tx" stale={stale} />
        <MetricValue label="Uptime" value={formatUptime(m?.uptime_s)} testId="metric-uptime" stale={stale} />
        <MetricValue label="Processes" value={formatCount(m?.procs)} testId="metric-procs" stale={stale} />
      </div>

      {roleAllows(me.role, "operator") && (
        <section className="rounded-lg border border-slate-800 bg-slate-900 p-4">
          <div className="flex flex-wrap items-center gap-2">
            <h2 className="mr-3 text-sm font-semibold text-slate-300">Commands</h2>
            {(["restart", "stop", "screenshot"] as const).map((name) => (
              <button
                key={name}
                type="button"
                data-testid={`cmd-${name}`}
                disabled={run.busy || blocked !== null}
                title={blocked ?? undefined}
                onClick={() => ask(name)}
                className={`rounded px-3 py-1.5 text-sm font-medium disabled:opacity-50 ${name === "screenshot" ? "bg-sky-700 text-white hover:bg-sky-600" : "bg-slate-700 text-slate-100 hover:bg-slate-600"}`}
              >
                {name[0]!.toUpperCase() + name.slice(1)}
              </button>
            ))}
            {blocked && (
              <span className="text-sm text-slate-400" data-testid="cmd-blocked">
                Unavailable: {blocked}
              </span>
            )}
          </div>
          <CommandPanel run={run} />
          <MoreCommands agent={agent} />
        </section>
      )}
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
      <LiveCharts agent={agent.id} clockOffset={agent.clock_offset_s} stale={stale} onInterval={onInterval} />
      <HistoryCharts agent={agent.id} />
    </div>
  );
}
