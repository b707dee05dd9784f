import { useCallback, useEffect, useState } from "react";
import { useApp, useNow } from "../context";
import { errorText, get } from "../lib/api";
import { roleAllows } from "../lib/commands";
import { formatAgo, formatTime } from "../lib/format";
import { notifierSentence, type Notifiers } from "../lib/rules";

const STATUS_CLASS: Record<string, string> = {
  ok: "bg-emerald-900 text-emerald-200",
  retrying: "bg-amber-900 text-amber-200",
  failing: "bg-red-900 text-red-200",
};

/** Notifier health: each channel's state, queue, last delivery and last failure. */
export function NotifiersPage() {
  const { me } = useApp();
  const [health, setHealth] = useState<Notifiers | null>(null);
  const [error, setError] = useState("");
  const now = useNow(5000);
  const allowed = roleAllows(me.role, "operator");

  const load = useCallback(() => {
    get<Notifiers>("/notifiers")
      .then((h) => {
        setHealth(h);
        setError("");
      })
      .catch((exc: unknown) => setError(errorText(exc)));
  }, []);
  useEffect(() => {
    if (!allowed) return undefined;
    load();
    const every = setInterval(load, 10_000);
    return () => clearInterval(every);
  }, [allowed, load]);

  if (!allowed) return <p className="text-slate-400" data-testid="notifiers-operator-only">Operators and admins see notifier health.</p>;
  return (
    <div className="space-y-4">
      <h1 className="text-xl font-semibold text-slate-100">Notifiers</h1>
      {error && <p className="text-sm text-red-400" data-testid="notifiers-error">{error}</p>}
      {health === null ? (
        <p className="text-slate-400">Loading…</p>
      ) : !health.configured ? (
        <p className="text-slate-400" data-testid="notifiers-none">
          No notification channel is configured: alerts are shown here and published on MQTT, but nobody is paged.
          Set up Telegram or Discord in the maestro's settings (docs/alerts.md).
        </p>
      ) : (
        <ul className="grid gap-3 md:grid-cols-2" data-testid="notifiers-list">
          {health.channels.map((n) => (
            <li key={n.channel} className="rounded border border-slate-800 p-4 text-sm" data-testid={`notifier-${n.channel}`} data-status={n.status}>
              <div className="flex items-center gap-2">
                <span className="font-medium text-slate-100">{n.channel}</span>
                <span className={`rounded px-2 py-0.5 text-xs font-semibold ${STATUS_CLASS[n.status] ?? ""}`}>{n.status}</span>
              </div>
              <p className="mt-2 text-slate-200" data-testid="notifier-sentence">{notifierSentence(n, now, formatAgo)}</p>
              <dl className="mt-2 grid grid-cols-2 gap-x-4 gap-y-1 text-xs">
                <dt className="text-slate-500">Queue</dt>
                <dd className="text-slate-300" data-testid="notifier-queued">{n.queued}</dd>
                <dt className="text-slate-500">Last delivery</dt>
                <dd className="text-slate-300" title={formatTime(n.last_sent_at)} data-testid="notifier-last-sent">{formatAgo(n.last_sent_at, now)}</dd>
                <dt className="text-slate-500">Last failure</dt>
                <dd className="text-slate-300" title={formatTime(n.last_failed_at)}>{formatAgo(n.last_failed_at, now)}</dd>
                <dt className="text-slate-500">Since start</dt>
                <dd className="text-slate-300">{n.sent} sent · {n.failed} failed · {n.retried} retried</dd>
              </dl>
              {n.last_error && <p className="mt-2 break-words text-xs text-amber-300" data-testid="notifier-error">{n.last_error}</p>}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
