import { useCallback, useEffect, useState } from "react";
import { useApp, useNow } from "../context";
import { del, errorText, get, post } from "../lib/api";
import { roleAllows } from "../lib/commands";
import { formatAgo, formatDuration, formatTime } from "../lib/format";
import { parseDuration, shortDuration } from "../lib/rules";
import { silenceMatches, silenceScope, silencesInForce } from "../lib/silences";
import { alertSeverityClass } from "../lib/states";
import type { Alert, Silence } from "../lib/types";


export function AlertsPage() {
  const { live, me } = useApp();
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [silenceList, setSilenceList] = useState<Silence[]>([]);
  const [phase, setPhase] = useState("");
  const [error, setError] = useState("");
  const [note, setNote] = useState("");
  const [silenceFor, setSilenceFor] = useState("1h");
  const silenceS = parseDuration(silenceFor);
  const now = useNow(5000);

  const load = useCallback(() => {
    get<Alert[]>(phase ? `/alerts?phase=${encodeURIComponent(phase)}` : "/alerts")
      .then((a) => {
        setAlerts(a);
        setError("");
      })
      .catch((exc: unknown) => setError(errorText(exc)));
    get<Silence[]>("/silences")
      .then(setSilenceList)
      .catch((exc: unknown) => setError(errorText(exc)));
  }, [phase]);

  useEffect(() => {
    load();
    const offEvent = live.onEvent((e) => e.kind === "alert" && load());
    const offOpen = live.onOpen(load);
    return () => {
      offEvent();
      offOpen();
    };
  }, [live, load]);

  async function act(path: string, body: unknown, done: string, method: "POST" | "DELETE" = "POST") {
    try {
      await (method === "POST" ? post(path, body) : del(path));
      setNote(done);
      load();
    } catch (exc) {
      setNote(errorText(exc));
    }
  }

  const canAct = roleAllows(me.role, "operator");
  const inForce = silencesInForce(silenceList, now);
  return (
    <div>
      <div className="mb-4 flex items-center gap-3">
        <h1 className="mr-4 text-xl font-semibold text-slate-100">Alerts</h1>
        {["", "firing", "pending", "resolved"].map((p) => (
          <button
            key={p || "all"}
            type="button"
            data-testid={`alerts-phase-${p || "all"}`}
            aria-pressed={phase === p}
            onClick={() => setPhase(p)}
            className={`rounded-full border px-3 py-1 text-xs ${phase === p ? "border-sky-500 bg-sky-950 text-sky-100" : "border-slate-700 text-slate-300 hover:bg-slate-800"}`}
          >
            {p || "all"}
          </button>
        ))}
        {canAct && (
          <label className="flex items-center gap-2 text-xs text-slate-400">
            Silence for
            <input
              data-testid="alerts-silence-for"
              value={silenceFor}
              onChange={(e) => setSilenceFor(e.target.value)}
              title="Any duration: 30m, 2h, 1d12h (up to 30 days)"
              className={`w-20 rounded border bg-slate-900 px-2 py-1 text-sm text-slate-100 ${silenceS == null ? "border-red-500" : "border-slate-700"}`}
            />
          </label>
        )}
        {note && <span className="ml-auto text-sm text-slate-400" data-testid="alerts-note">{note}</span>}
      </div>
      {error && <p className="text-sm text-red-400" data-testid="alerts-error">{error}</p>}
      {alerts === null ? (
        <p className="text-slate-400">Loading…</p>
      ) : alerts.length === 0 ? (
        <p className="text-slate-400" data-testid="alerts-empty">No alerts.</p>
      ) : (
        <table className="w-full text-left text-sm" data-testid="alerts-table">
          <thead className="text-xs uppercase text-slate-500">
            <tr>
              <th className="py-2">Severity</th><th>Agent</th><th>Rule</th><th>Summary</th><th>Phase</th>
              <th>Since</th><th>Acked</th><th />
            </tr>
          </thead>
          <tbody>
            {alerts.map((a) => (
              <tr key={a.id} className="border-t border-slate-800" data-testid={`alert-${a.id}`} data-phase={a.phase}>
                <td className="py-2">
                  <span className={`rounded px-2 py-0.5 text-xs font-semibold ${alertSeverityClass(a.severity)}`}>{a.severity}</span>
                </td>
                <td><a className="text-sky-400 hover:underline" href={`#/agents/${encodeURIComponent(a.agent)}`}>{a.agent}</a></td>
                <td className="text-slate-300">{a.rule}</td>
                <td className="text-slate-200">{a.summary}</td>
                <td className={a.phase === "firing" ? "text-red-400" : a.phase === "resolved" ? "text-emerald-400" : "text-amber-300"}>{a.phase}</td>
                <td className="text-slate-400" title={formatTime(a.since)}>{formatAgo(a.since, now)}</td>
                <td className="text-slate-400" data-testid={`alert-acked-${a.id}`}>
                  {a.acked_by ?? "—"}
                  {inForce.some((x) => silenceMatches(x, a.agent, a.rule)) && (
                    <span className="ml-2 rounded bg-slate-800 px-1.5 py-0.5 text-xs text-slate-300" data-testid={`alert-silenced-${a.id}`}>
                      silenced
                    </span>
                  )}
                </td>
                <td className="space-x-2 text-right whitespace-nowrap">
                  {canAct && a.phase !== "resolved" && (
                    <>
                      <button
                        type="button"
                        data-testid={`alert-ack-${a.id}`}
                        disabled={a.acked_by != null}
                        onClick={() => void act(`/alerts/${encodeURIComponent(a.id)}/ack`, {}, `Acknowledged ${a.rule} on ${a.agent}`)}
                        className="rounded bg-slate-700 px-2.5 py-1 text-xs text-slate-100 hover:bg-slate-600 disabled:opacity-40"
                      >
                        Ack
                      </button>
                      <button
                        type="button"
                        data-testid={`alert-silence-${a.id}`}
                        disabled={silenceS == null}
                        title={silenceS == null ? "Silence for: e.g. 30m, 2h, 1d" : undefined}
                        onClick={() => silenceS != null && void act(`/alerts/${encodeURIComponent(a.id)}/silence`, { duration_s: silenceS }, `Silenced ${a.rule} on ${a.agent} for ${shortDuration(silenceS)}`)}
                        className="rounded bg-slate-700 px-2.5 py-1 text-xs text-slate-100 hover:bg-slate-600"
                      >
                        Silence {silenceS == null ? "" : shortDuration(silenceS)}
                      </button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2 className="mt-8 mb-2 text-lg font-semibold text-slate-100">Silences in force</h2>
      {inForce.length === 0 ? (
        <p className="text-sm text-slate-400" data-testid="silences-empty">
          None: every alert notifies.
        </p>
      ) : (
        <table className="w-full text-left text-sm" data-testid="silences-table">
          <thead className="text-xs uppercase text-slate-500">
            <tr>
              <th className="py-2">Mutes</th><th>Ends in</th><th>By</th><th>Reason</th><th />
            </tr>
          </thead>
          <tbody>
            {inForce.map((x) => (
              <tr key={x.id} className="border-t border-slate-800" data-testid={`silence-${x.id}`}>
                <td className="py-2 text-slate-200">{silenceScope(x)}</td>
                <td className="text-slate-400" title={formatTime(x.ends_at)}>{formatDuration(x.ends_at - now)}</td>
                <td className="text-slate-400">{x.created_by}</td>
                <td className="text-slate-400">{x.reason || "—"}</td>
                <td className="text-right">
                  {canAct && (
                    <button
                      type="button"
                      data-testid={`silence-end-${x.id}`}
                      onClick={() => void act(`/silences/${encodeURIComponent(x.id)}`, undefined, `Ended the silence of ${silenceScope(x)}`, "DELETE")}
                      className="rounded bg-slate-700 px-2.5 py-1 text-xs text-slate-100 hover:bg-slate-600"
                    >
                      End
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
