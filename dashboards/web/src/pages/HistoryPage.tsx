import { useCallback, useEffect, useState } from "react";
import { useApp } from "../context";
import { errorText, get } from "../lib/api";
import { commandSummary, screenshotUrl } from "../lib/commands";
import { formatTime } from "../lib/format";
import { commandStateClass } from "../lib/states";
import type { AuditEntry, Command } from "../lib/types";

const PAGE = 100;

export function HistoryPage() {
  return (
    <div className="grid gap-8 2xl:grid-cols-2">
      <Commands />
      <Audit />
    </div>
  );
}

function Commands() {
  const { live } = useApp();
  const [commands, setCommands] = useState<Command[] | null>(null);
  const [error, setError] = useState("");
  const load = useCallback(() => {
    get<Command[]>("/commands")
      .then(setCommands)
      .catch((exc: unknown) => setError(errorText(exc)));
  }, []);
  useEffect(() => {
    load();
    // Update rows in place as commands move; a new command shows on the next reload.
    const off = live.onEvent((e) => {
      if (e.kind !== "command") return;
      const c = e.data as unknown as Command;
      setCommands((list) => {
        if (!list) return list;
        const i = list.findIndex((x) => x.id === c.id);
        if (i < 0) return [c, ...list];
        const next = [...list];
        next[i] = c.updated_at >= list[i]!.updated_at ? c : list[i]!;
        return next;
      });
    });
    return off;
  }, [live, load]);
  return (
    <section>
      <h1 className="mb-3 text-xl font-semibold text-slate-100">Commands</h1>
      {error && <p className="text-sm text-red-400">{error}</p>}
      {commands?.length === 0 && <p className="text-slate-400">No commands yet.</p>}
      {commands && commands.length > 0 && (
        <table className="w-full text-left text-sm" data-testid="commands-table">
          <thead className="text-xs uppercase text-slate-500">
            <tr><th className="py-2">Time</th><th>Agent</th><th>Command</th><th>State</th><th>By</th><th>Result</th></tr>
          </thead>
          <tbody>
            {commands.map((c) => (
              <tr key={c.id} className="border-t border-slate-800" data-testid={`command-row-${c.id}`} data-state={c.state}>
                <td className="py-1.5 whitespace-nowrap text-slate-400">{formatTime(c.created_at)}</td>
                <td><a className="text-sky-400 hover:underline" href={`#/agents/${encodeURIComponent(c.agent)}`}>{c.agent}</a></td>
                <td className="text-slate-200">{c.name}</td>
                <td className={commandStateClass(c.state)}>{c.state}</td>
                <td className="text-slate-300">{c.actor}</td>
                <td className="max-w-xs truncate text-slate-400" title={commandSummary(c)}>
                  {screenshotUrl(c) && c.has_result ? (
                    <a className="text-sky-400 hover:underline" href={screenshotUrl(c)!} target="_blank" rel="noreferrer" data-testid={`history-screenshot-${c.id}`}>
                      view screenshot
                    </a>
                  ) : (
                    commandSummary(c)
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Audit() {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [more, setMore] = useState(true);
  const [error, setError] = useState("");
  const page = useCallback((before?: number) => {
    const q = new URLSearchParams({ limit: String(PAGE) });
    if (before !== undefined) q.set("before_id", String(before));
    get<AuditEntry[]>(`/audit?${q.toString()}`)
      .then((rows) => {
        setEntries((old) => (before === undefined ? rows : [...old, ...rows]));
        setMore(rows.length === PAGE);
      })
      .catch((exc: unknown) => setError(errorText(exc)));
  }, []);
  useEffect(() => page(), [page]);
  const last = entries[entries.length - 1];
  return (
    <section>
      <h1 className="mb-3 text-xl font-semibold text-slate-100">Audit log</h1>
      {error && <p className="text-sm text-red-400" data-testid="audit-error">{error}</p>}
      <table className="w-full text-left text-sm" data-testid="audit-table">
        <thead className="text-xs uppercase text-slate-500">
          <tr><th className="py-2">Time</th><th>Who</th><th>Action</th><th>Target</th><th>Detail</th></tr>
        </thead>
        <tbody>
          {entries.map((e) => (
            <tr key={e.id} className="border-t border-slate-800" data-testid={`audit-${e.id}`}>
              <td className="py-1.5 whitespace-nowrap text-slate-400">{formatTime(e.ts)}</td>
              <td className="text-slate-200">{e.actor}</td>
              <td className="text-slate-200">{e.action}</td>
              <td className="text-slate-300">{e.target}</td>
              <td className="max-w-xs truncate font-mono text-xs text-slate-500" title={JSON.stringify(e.detail)}>
                {JSON.stringify(e.detail)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {more && last && (
        <button
          type="button"
          data-testid="audit-more"
          onClick={() => page(last.id)}
          className="mt-3 rounded border border-slate-700 px-3 py-1 text-sm text-slate-300 hover:bg-slate-800"
        >
          Older
        </button>
      )}
    </section>
  );
}
