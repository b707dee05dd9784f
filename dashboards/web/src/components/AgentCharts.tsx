// The agent page's charts: live (seeded from history, every family the agent sends) and
// history (presets, custom from/to, drag to zoom; the view lives in the hash query).

import { useEffect, useMemo, useState } from "react";
import { useApp, useNow } from "../context";
import { errorText, get } from "../lib/api";
import { sampleInterval } from "../lib/agentLive";
import {
  appendFrameAll, emptyLive, historyToPlot, liveToPlot, liveWindow, mergeSeed, seedLive,
  type LiveBuffer,
} from "../lib/chart";
import { familiesOf, fieldsWithData, FORMATS, HISTORY_FIELDS, PALETTE, type Family } from "../lib/families";
import { formatTime } from "../lib/format";
import {
  fixedView, fromLocalInput, hashQuery, isFixed, parseView, queryUrl, RANGES, toLocalInput,
  viewParams, viewRefreshMs, viewToQuery, withQuery, type HistoryQuery, type HistoryView,
} from "../lib/ranges";
import type { History, MetricsFrame } from "../lib/types";
import { Chart, type ChartSeries } from "./Chart";

const LIVE_SPAN_S = 300;
const LIVE_POINTS = 600; // five minutes of 1 s frames, with room for a faster agent

function seriesOf(family: Family): ChartSeries[] {
  const format = FORMATS[family.unit];
  return family.labels.map((label, i) => ({ label, color: PALETTE[i % PALETTE.length]!, format }));
}

function FamilyChart({
  family, data, xRange, onZoom, testId,
}: {
  family: Family;
  data: ReturnType<typeof liveToPlot>;
  xRange: [number, number];
  onZoom?: (from: number, to: number) => void;
  testId: string;
}) {
  const series = useMemo(() => seriesOf(family), [family]);
  return (
    <div className="min-w-0" data-testid={`family-${family.id}`}>
      <h3 className="mb-1 text-xs font-semibold text-slate-400">{family.title}</h3>
      <Chart
        data={data}
        series={series}
        format={FORMATS[family.unit]}
        yRange={family.unit === "percent" ? [0, 100] : undefined}
        xRange={xRange}
        onZoom={onZoom}
        testId={testId}
      />
    </div>
  );
}

/** Keys of the buffer holding at least one value (a GPU-less machine has no GPU chart). */
function keysWithData(buffer: LiveBuffer): string[] {
  return Object.entries(buffer.values).filter(([, col]) => col.some((v) => v != null)).map(([k]) => k);
}

export function LiveCharts({
  agent, clockOffset, stale, onInterval,
}: {
  agent: string;
  clockOffset: number | null | undefined;
  stale: boolean;
  onInterval: (seconds: number | null) => void;
}) {
  const { live } = useApp();
  const now = useNow();
  const [buffer, setBuffer] = useState<LiveBuffer>(() => emptyLive([]));
  const [liveTs, setLiveTs] = useState<number[]>([]);
  const [seeded, setSeeded] = useState<number | null>(null); // points taken from history

  useEffect(() => {
    let cancelled = false;
    setBuffer(emptyLive([]));
    setLiveTs([]);
    setSeeded(null);
    // First paint: the last five minutes of every family from history (per core, mount,
    // sensor and GPU too), then the frames on top.
    const [from, to] = liveWindow(Date.now() / 1000, clockOffset, LIVE_SPAN_S);
    get<History>(queryUrl(agent, { from: Math.floor(from), to: Math.ceil(to) + 1, step: 1 }, HISTORY_FIELDS))
      .then((h) => {
        if (cancelled) return;
        setBuffer((b) => mergeSeed(seedLive(h, LIVE_POINTS), b, LIVE_POINTS));
        setSeeded(h.ts.length);
      })
      .catch(() => undefined); // live frames still come; the chart starts empty
    const unsubscribe = live.subscribe([agent]);
    const off = live.onEvent((event) => {
      if (event.kind !== "metrics") return;
      const frame = event.data as unknown as MetricsFrame;
      if (frame.agent !== agent || typeof frame.ts !== "number" || !frame.values) return;
      setBuffer((b) => appendFrameAll(b, frame, LIVE_POINTS));
      setLiveTs((ts) => [...ts.slice(-20), frame.ts]);
    });
    return () => {
      cancelled = true;
      off();
      unsubscribe();
    };
    // The clock offset only places the seed window: not a reason to start over.
  }, [live, agent]);

  const interval = sampleInterval(liveTs);
  useEffect(() => onInterval(interval), [interval, onInterval]);

  const keys = keysWithData(buffer);
  const families = useMemo(() => familiesOf(keys), [keys.join("|")]);
  const xRange = liveWindow(now, clockOffset, LIVE_SPAN_S);
  return (
    <section
      className="rounded-lg border border-slate-800 bg-slate-900 p-4"
      data-testid="live-charts"
      data-stale={stale}
      data-seeded={seeded ?? undefined}
    >
      <h2 className="mb-2 flex flex-wrap items-center gap-2 text-sm font-semibold text-slate-300">
        Live <span className="font-normal text-slate-500">(last 5 min)</span>
        {stale && (
          <span className="rounded bg-amber-900/60 px-1.5 py-0.5 text-xs font-medium text-amber-200" data-testid="live-stale">
            stale: no new samples
          </span>
        )}
      </h2>
      {buffer.ts.length === 0 && <p className="mb-2 text-xs text-slate-500" data-testid="live-waiting">Waiting for samples…</p>}
      <div className={`grid gap-4 xl:grid-cols-2 ${stale ? "opacity-60" : ""}`}>
        {families.map((f) => (
          <FamilyChart
            key={f.id}
            family={f}
            data={liveToPlot(buffer, f.fields)}
            xRange={xRange}
            testId={`chart-live-${f.id}`}
          />
        ))}
      </div>
    </section>
  );
}

/** The history view in the location hash, and a setter that writes it there (shareable). */
function useHashView(): [HistoryView, (view: HistoryView) => void] {
  const [view, setView] = useState(() => parseView(hashQuery(window.location.hash)));
  useEffect(() => {
    const onChange = () => setView(parseView(hashQuery(window.location.hash)));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  const set = (next: HistoryView) => {
    window.location.hash = withQuery(window.location.hash, viewParams(next));
  };
  return [view, set];
}

export function HistoryCharts({ agent }: { agent: string }) {
  const [view, setView] = useHashView();
  const [query, setQuery] = useState<HistoryQuery | null>(null);
  const [history, setHistory] = useState<History | null>(null);
  const [error, setError] = useState("");
  const [reload, setReload] = useState(0);
  const viewKey = viewParams(view);

  useEffect(() => {
    let cancelled = false;
    setError("");
    const nowS = Date.now() / 1000;
    const q = viewToQuery(view, nowS);
    get<History>(queryUrl(agent, q, HISTORY_FIELDS))
      .then((h) => {
        if (cancelled) return;
        setQuery(q);
        setHistory(h);
      })
      .catch((exc: unknown) => !cancelled && setError(errorText(exc)));
    const every = viewRefreshMs(view, nowS);
    const timer = every === null ? undefined : setTimeout(() => setReload((n) => n + 1), every);
    return () => {
      cancelled = true;
      clearTimeout(timer);
    };
  }, [agent, viewKey, reload]);

  // A window without samples still shows the main charts (empty, on the right time axis).
  const families = useMemo(() => {
    if (!history) return [];
    const withData = fieldsWithData(history.series);
    return familiesOf(withData.length ? withData : ["cpu", "mem", "swap", "disk", "net_rx_bps", "net_tx_bps"]);
  }, [history]);
  const zoom = (from: number, to: number) => {
    const next = fixedView(from, to);
    if (next) setView(next);
  };
  return (
    <section className="rounded-lg border border-slate-800 bg-slate-900 p-4" data-testid="history-charts">
      <div className="mb-2 flex flex-wrap items-center gap-2">
        <h2 className="mr-3 text-sm font-semibold text-slate-300">History</h2>
        {RANGES.map((r) => (
          <button
            key={r.key}
            type="button"
            data-testid={`range-${r.key}`}
            aria-pressed={!isFixed(view) && view.range === r.key}
            onClick={() => setView({ range: r.key })}
            className={`rounded px-2.5 py-1 text-xs ${!isFixed(view) && view.range === r.key ? "bg-sky-700 text-white" : "bg-slate-800 text-slate-300 hover:bg-slate-700"}`}
          >
            {r.label}
          </button>
        ))}
        <CustomRange view={view} query={query} onApply={setView} />
        {history && (
          <span className="ml-auto text-xs text-slate-500" data-testid="history-window">
            {formatTime(query?.from)} → {formatTime(query?.to)} · step {history.step} s · drag to zoom
          </span>
        )}
      </div>
      {error && <p className="text-sm text-red-400" data-testid="history-error">{error}</p>}
      {history && query && history.ts.length === 0 && (
        <p className="text-xs text-slate-500" data-testid="history-empty">No samples in this window.</p>
      )}
      {history && query && (
        <div className="grid gap-4 xl:grid-cols-2">
          {families.map((f) => (
            <FamilyChart
              key={f.id}
              family={f}
              data={historyToPlot(history, f.fields)}
              xRange={[query.from, query.to]}
              onZoom={zoom}
              testId={`chart-history-${f.id}`}
            />
          ))}
        </div>
      )}
    </section>
  );
}

function CustomRange({
  view, query, onApply,
}: {
  view: HistoryView;
  query: HistoryQuery | null;
  onApply: (view: HistoryView) => void;
}) {
  const [from, setFrom] = useState("");
  const [to, setTo] = useState("");
  const [problem, setProblem] = useState("");
  useEffect(() => {
    if (!query) return;
    setFrom(toLocalInput(query.from));
    setTo(toLocalInput(query.to));
  }, [query?.from, query?.to]);

  function apply(e: React.FormEvent) {
    e.preventDefault();
    const f = fromLocalInput(from);
    const t = fromLocalInput(to);
    const next = f !== null && t !== null ? fixedView(f, t) : null;
    if (!next) {
      setProblem("Pick a start before the end.");
      return;
    }
    setProblem("");
    onApply(next);
  }

  return (
    <form className="flex flex-wrap items-center gap-1 text-xs text-slate-400" onSubmit={apply}>
      <input
        type="datetime-local"
        aria-label="From"
        data-testid="range-from"
        value={from}
        onChange={(e) => setFrom(e.target.value)}
        className="rounded border border-slate-700 bg-slate-950 px-1.5 py-0.5 text-slate-200"
      />
      <span>→</span>
      <input
        type="datetime-local"
        aria-label="To"
        data-testid="range-to"
        value={to}
        onChange={(e) => setTo(e.target.value)}
        className="rounded border border-slate-700 bg-slate-950 px-1.5 py-0.5 text-slate-200"
      />
      <button type="submit" data-testid="range-apply" className="rounded bg-slate-800 px-2.5 py-1 text-slate-300 hover:bg-slate-700">
        Apply
      </button>
      {isFixed(view) && (
        <span className="rounded bg-sky-950 px-1.5 py-0.5 text-sky-300" data-testid="range-fixed">custom window</span>
      )}
      {problem && <span className="text-red-400" role="alert">{problem}</span>}
    </form>
  );
}
