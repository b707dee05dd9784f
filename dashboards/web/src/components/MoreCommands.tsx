import { useState } from "react";
import { useApp } from "../context";
import { commandBlock } from "../lib/agentLive";
import { roleAllows } from "../lib/commands";
import { shellRequest } from "../lib/shell";
import type { Agent } from "../lib/types";
import { useCommand } from "../useCommand";
import { CommandPanel } from "./CommandPanel";

const BUTTON = "min-h-10 rounded bg-slate-700 px-3 py-1.5 text-sm font-medium text-slate-100 hover:bg-slate-600 disabled:opacity-50";

/** The agent page's `metrics` (take a sample now) and, for admins, `shell` commands. */
export function MoreCommands({ agent }: { agent: Agent }) {
  const { me, live } = useApp();
  const sample = useCommand(live);
  const shell = useCommand(live);
  const [line, setLine] = useState("");
  const [limit, setLimit] = useState("30");
  const [problem, setProblem] = useState("");
  const blocked = commandBlock(agent);
  const path = `/agents/${encodeURIComponent(agent.id)}/command`;
  if (!roleAllows(me.role, "operator")) return null;

  function runShell() {
    const request = shellRequest(line, limit);
    if (!request.ok) {
      setProblem(request.error);
      return;
    }
    setProblem("");
    void shell.start(path, request.body);
  }

  return (
    <div className="mt-4 space-y-3 border-t border-slate-800 pt-4" data-testid="more-commands">
      <div className="flex flex-wrap items-center gap-2">
        <button
          type="button"
          data-testid="cmd-metrics"
          disabled={sample.busy || blocked !== null}
          title={blocked ?? "Ask the agent for a fresh sample now"}
          onClick={() => void sample.start(path, { name: "metrics", timeout: 15 })}
          className={BUTTON}
        >
          Sample now
        </button>
      </div>
      <CommandPanel run={sample} />
      {roleAllows(me.role, "admin") && (
        <form
          className="flex flex-wrap items-end gap-2"
          data-testid="shell-form"
          onSubmit={(e) => {
            e.preventDefault();
            runShell();
          }}
        >
          <label className="flex min-w-0 flex-1 flex-col gap-1 text-xs text-slate-400">
            Shell command (admin; run with /bin/sh -c on {agent.id}, audited)
            <input
              data-testid="shell-line"
              value={line}
              onChange={(e) => setLine(e.target.value)}
              placeholder="uptime"
              className="rounded border border-slate-700 bg-slate-950 px-2 py-1.5 font-mono text-sm text-slate-100"
            />
          </label>
          <label className="flex w-24 flex-col gap-1 text-xs text-slate-400">
            Limit (s)
            <input data-testid="shell-limit" inputMode="numeric" value={limit} onChange={(e) => setLimit(e.target.value)} className="rounded border border-slate-700 bg-slate-950 px-2 py-1.5 text-sm text-slate-100" />
          </label>
          <button type="submit" data-testid="cmd-shell" disabled={shell.busy || blocked !== null} title={blocked ?? undefined} className={BUTTON}>
            Run
          </button>
          {problem && <span className="w-full text-sm text-red-400" data-testid="shell-problem">{problem}</span>}
        </form>
      )}
      <CommandPanel run={shell} />
    </div>
  );
}
