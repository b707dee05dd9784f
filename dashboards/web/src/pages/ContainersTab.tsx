import { useEffect, useState } from "react";
import { CommandPanel } from "../components/CommandPanel";
import { ConfirmDialog, type ConfirmRequest } from "../components/ConfirmDialog";
import { useApp } from "../context";
import { commandSummary, containersOf } from "../lib/commands";
import { commandFailure } from "../lib/sentences";
import { commandStateClass, isFinalCommandState } from "../lib/states";
import { useCommand } from "../useCommand";

/** Containers from a `docker_ps` command, each with a restart (`docker_restart`) button. */
export function ContainersTab({ agent }: { agent: string }) {
  const { live } = useApp();
  const list = useCommand(live);
  const restart = useCommand(live);
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const path = `/agents/${encodeURIComponent(agent)}/command`;
  const refresh = () => void list.start(path, { name: "docker_ps", args: { all: true } });

  useEffect(refresh, [agent]);

  // A finished restart changes the list: ask again.
  const restartDone = restart.command?.state === "ok";
  useEffect(() => (restartDone ? refresh() : undefined), [restartDone]);

  const containers = containersOf(list.command);
  const listing = list.busy || (list.command != null && !isFinalCommandState(list.command.state));
  return (
    <div className="space-y-4" data-testid="containers">
      <div className="flex items-center gap-3">
        <button
          type="button"
          data-testid="containers-refresh"
          disabled={listing}
          onClick={refresh}
          className="rounded bg-slate-700 px-3 py-1.5 text-sm text-slate-100 hover:bg-slate-600 disabled:opacity-50"
        >
          {listing ? "Listing…" : "Refresh"}
        </button>
        {list.command && (
          <span className={`text-sm ${commandStateClass(list.command.state)}`} data-testid="containers-state" data-state={list.command.state}>
            {commandFailure(list.command) ?? commandSummary(list.command)}
          </span>
        )}
        {list.error && <span className="text-sm text-red-400" data-testid="containers-error">{list.error}</span>}
      </div>
      {list.command?.state === "ok" && containers.length === 0 && (
        <p className="text-sm text-slate-400" data-testid="containers-empty">No containers.</p>
      )}
      {containers.length > 0 && (
        <table className="w-full text-left text-sm">
          <thead className="text-xs uppercase text-slate-500">
            <tr>
              <th className="py-2">Name</th><th>Image</th><th>State</th><th>Status</th><th />
            </tr>
          </thead>
          <tbody>
            {containers.map((c) => (
              <tr key={c.id} className="border-t border-slate-800" data-testid={`container-${c.name}`} data-state={c.state}>
                <td className="py-2 font-medium text-slate-100">{c.name}</td>
                <td className="text-slate-300">{c.image}</td>
                <td className={c.state === "running" ? "text-emerald-400" : "text-slate-400"}>{c.state}</td>
                <td className="text-slate-400">{c.status}</td>
                <td className="text-right">
                  <button
                    type="button"
                    data-testid={`container-restart-${c.name}`}
                    disabled={restart.busy}
                    onClick={() =>
                      setConfirm({
                        title: `Restart container ${c.name}?`,
                        body: `The engine on ${agent} stops and starts ${c.name} (${c.image}).`,
                        confirmLabel: "Restart",
                        danger: true,
                        onConfirm: () => void restart.start(path, { name: "docker_restart", args: { container: c.name } }),
                      })
                    }
                    className="rounded bg-slate-700 px-3 py-1 text-xs text-slate-100 hover:bg-slate-600 disabled:opacity-50"
                  >
                    Restart
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <CommandPanel run={restart} />
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
    </div>
  );
}
