import { useEffect, useMemo, useState } from "react";
import { Chart, type ChartSeries } from "../components/Chart";
import { CommandPanel } from "../components/CommandPanel";
import { ConfirmDialog, type ConfirmRequest } from "../components/ConfirmDialog";
import { StateBadge } from "../components/StateBadge";
import { Terminal } from "../components/Terminal";
import { useApp, useNow } from "../context";
import { ApiError, errorText, get } from "../lib/api";
import { appendFrame, emptyLive, historyToPlot, liveToPlot } from "../lib/chart";
import { roleAllows } from "../lib/commands";
import { formatAgo, formatLabels, formatPercent, formatRate } from "../lib/format";
import { historyRefreshMs, historyUrl, RANGES } from "../lib/ranges";
import { routeHash, type AgentTab } from "../lib/router";
import type { Agent, History, MetricsFrame } from "../lib/types";
import { useCommand } from "../useCommand";
import { ContainersTab } from "./ContainersTab";

const PCT_FIELDS = ["cpu", "mem", "disk"] as const;
const NET_FIELDS = ["net_rx_bps", "net_tx_bps"] as const;
const LIVE_POINTS = 300; // five minutes of 1 s frames

const PCT_SERIES: ChartSeries[] = [
  { label: "CPU", color: "#38bdf8", format: formatPercent },
  { label: "Memory", color: "#a78bfa", format: formatPercent },
  { label: "Disk", color: "#fbbf24", format: formatPercent },
];
const NET_SERIES: ChartSeries[] = [
  { label: "Net in", color: "#34d399", format: formatRate },
  { label: "Net out", color: "#f472b6", format: formatRate },
];

export function AgentPage({ id, tab }: { id: string; tab: AgentTab }) {
  const { fleet, me } = useApp();
  const [fetched, setFetched] = useState<Agent | null>(null);
  const [missing, setMissing] = useState("");
  const now = useNow();

  useEffect(() => {
    get<Agent>(`/agents/${encodeURIComponent(id)}`)
      .then(setFetched)
      .catch((exc: unknown) =>
        setMissing(exc instanceof ApiError && exc.status === 404 ? `No agent "${id}".` : errorText(exc)),
      );
  }, [id]);

  const agent = fleet.agents[id] ?? fetched;
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

function MetricValue({ label, value, testId }: { label: string; value: string; testId: string }) {
  return (
    <div className="rounded-lg border border-slate-800 bg-slate-900 px-4 py-3">
      <div className="text-xs text-slate-400">{label}</div>
      <div className="text-xl font-semibold tabular-nums text-slate-100" data-testid={testId}>{value}</div>
    </div>
  );
}

function Overview({ agent }: { agent: Agent }) {
  const { live, me } = useApp();
  const run = useCommand(live);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const m = agent.metrics;

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
      <div className="grid grid-cols-2 gap-3 md:grid-cols-3 lg:grid-cols-6">
        <MetricValue label="CPU" value={formatPercent(m?.cpu)} testId="metric-cpu" />
        <MetricValue label="Memory" value={formatPercent(m?.mem)} testId="metric-mem" />
        <MetricValue label="Disk" value={formatPercent(m?.disk)} testId="metric-disk" />
        <MetricValue label="Load (1 min)" value={m?.load1 == null ? "—" : m.load1.toFixed(2)} testId="metric-load1" />
        <MetricValue label="Net in" value={formatRate(m?.net_rx_bps)} testId="metric-net-rx" />
        <MetricValue label="Net out" value={formatRate(m?.net_tx_bps)} testId="metric-net-tx" />
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
                disabled={run.busy}
                onClick={() => ask(name)}
                className={`rounded px-3 py-1.5 text-sm font-medium disabled:opacity-50 ${name === "screenshot" ? "bg-sky-700 text-white hover:bg-sky-600" : "bg-slate-700 text-slate-100 hover:bg-slate-600"}`}
              >
                {name[0]!.toUpperCase() + name.slice(1)}
              </button>
            ))}
          </div>
          <CommandPanel run={run} />
        </section>
      )}
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
      <LiveCharts agent={agent.id} />
      <HistoryCharts agent={agent.id} />
    </div>
  );
}

function LiveCharts({ agent }: { agent: string }) {
  const { live } = useApp();
  const fields = [...PCT_FIELDS, ...NET_FIELDS];
  const [buffer, setBuffer] = useState(() => emptyLive(fields));

  useEffect(() => {
    const unsubscribe = live.subscribe([agent]);
    const off = live.onEvent((event) => {
      if (event.kind !== "metrics") return;
      const frame = event.data as unknown as MetricsFrame;
      if (frame.agent !== agent || typeof frame.ts !== "number" || !frame.values) return;
      setBuffer((b) => appendFrame(b, frame, LIVE_POINTS));
    });
    return () => {
      off();
      unsubscribe();
    };
  }, [live, agent]);

  const pct = useMemo(() => liveToPlot(buffer, PCT_FIELDS), [buffer]);
  const net = useMemo(() => liveToPlot(buffer, NET_FIELDS), [buffer]);
  return (
    <section className="rounded-lg border border-slate-800 bg-slate-900 p-4" data-testid="live-charts">
      <h2 className="mb-2 text-sm font-semibold text-slate-300">
        Live <span className="font-normal text-slate-500">(1 s, last 5 min)</span>
      </h2>
      {buffer.ts.length === 0 && <p className="mb-2 text-xs text-slate-500" data-testid="live-waiting">Waiting for samples…</p>}
      <div className="grid gap-4 xl:grid-cols-2">
        <Chart data={pct} series={PCT_SERIES} yRange={[0, 100]} testId="chart-live-pct" />
        <Chart data={net} series={NET_SERIES} testId="chart-live-net" />
      </div>
    </section>
  );
}

function HistoryCharts({ agent }: { agent: string }) {
  const [range, setRange] = useState("1h");
  const [history, setHistory] = useState<History | null>(null);
  const [error, setError] = useState("");
  const [reload, setReload] = useState(0);

  useEffect(() => {
    let cancelled = false;
    setError("");
    get<History>(historyUrl(agent, range, Date.now() / 1000, [...PCT_FIELDS, ...NET_FIELDS]))
      .then((h) => !cancelled && setHistory(h))
      .catch((exc: unknown) => !cancelled && setError(errorText(exc)));
    const timer = setTimeout(() => setReload((n) => n + 1), historyRefreshMs(range));
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [agent, range, reload]);

  const pct = useMemo(() => (history ? historyToPlot(history, PCT_FIELDS) : null), [history]);
  const net = useMemo(() => (history ? historyToPlot(history, NET_FIELDS) : null), [history]);
  return (
    <section className="rounded-lg border border-slate-800 bg-slate-900 p-4" data-testid="history-charts">
      <div className="mb-2 flex items-center gap-2">
        <h2 className="mr-3 text-sm font-semibold text-slate-300">History</h2>
        {RANGES.map((r) => (
          <button
            key={r.key}
            type="button"
            data-testid={`range-${r.key}`}
            aria-pressed={range === r.key}
            onClick={() => setRange(r.key)}
            className={`rounded px-2.5 py-1 text-xs ${range === r.key ? "bg-sky-700 text-white" : "bg-slate-800 text-slate-300 hover:bg-slate-700"}`}
          >
            {r.label}
          </button>
        ))}
        {history && <span className="ml-auto text-xs text-slate-500">step {history.step} s · {history.source}</span>}
      </div>
      {error && <p className="text-sm text-red-400" data-testid="history-error">{error}</p>}
      {pct && net && (
        <div className="grid gap-4 xl:grid-cols-2">
          <Chart data={pct} series={PCT_SERIES} yRange={[0, 100]} testId="chart-history-pct" />
          <Chart data={net} series={NET_SERIES} testId="chart-history-net" />
        </div>
      )}
    </section>
  );
}
