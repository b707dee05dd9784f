import { formatAgo, formatLabels, formatPercent } from "../lib/format";
import { isStale } from "../lib/fleetView";
import type { Agent } from "../lib/types";
import { AgentAlerts, StaleMark } from "./AgentCard";
import { StateBadge } from "./StateBadge";

/** The compact view: one line per agent, for fleets of hundreds. A list on a phone. */
export function FleetTable({ agents, now, testId }: { agents: Agent[]; now: number; testId: string }) {
  return (
    <table className="w-full text-left text-sm" data-testid={testId}>
      <thead className="text-xs uppercase text-slate-500">
        <tr>
          <th className="py-2 pr-3">Agent</th>
          <th className="pr-3">State</th>
          <th className="pr-3 text-right">CPU</th>
          <th className="pr-3 text-right">Mem</th>
          <th className="pr-3 text-right">Disk</th>
          <th className="pr-3">Last seen</th>
          <th className="pr-3">Host</th>
          <th>Labels</th>
        </tr>
      </thead>
      <tbody>
        {agents.map((a) => {
          const stale = isStale(a, now);
          const figure = `tabular-nums pr-3 text-right ${stale ? "text-slate-500" : "text-slate-200"}`;
          return (
            <tr
              key={a.id}
              className={`border-t border-slate-800 hover:bg-slate-900 ${a.state === "offline" ? "opacity-60" : ""}`}
              data-testid={`agent-row-${a.id}`}
              data-state={a.state}
              data-stale={stale}
            >
              <td className="py-1 pr-3 font-medium">
                <a className="text-sky-400 hover:underline" href={`#/agents/${encodeURIComponent(a.id)}`}>{a.id}</a>{" "}
                <AgentAlerts agent={a} />
              </td>
              <td className="pr-3 whitespace-nowrap">
                <StateBadge state={a.state} /> <StaleMark agent={a} now={now} />
              </td>
              <td className={figure} data-label="CPU" data-testid={`row-cpu-${a.id}`}>{formatPercent(a.metrics?.cpu)}</td>
              <td className={figure} data-label="Mem">{formatPercent(a.metrics?.mem)}</td>
              <td className={figure} data-label="Disk">{formatPercent(a.metrics?.disk)}</td>
              <td className="pr-3 whitespace-nowrap text-slate-400" data-label="seen">{formatAgo(a.last_seen, now)}</td>
              <td className="max-w-48 truncate pr-3 text-slate-400">{a.host ?? "—"}</td>
              <td className="text-xs text-slate-400">{formatLabels(a.labels).join(" ")}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
