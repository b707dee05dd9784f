import { useCallback, useEffect, useState } from "react";
import { errorText, get } from "../lib/api";
import { commandSummary } from "../lib/commands";
import type { Job } from "../lib/jobs";
import { commandFailure } from "../lib/sentences";
import { commandStateClass } from "../lib/states";
import type { Command } from "../lib/types";
import { CommandPanel } from "./CommandPanel";

const BUTTON = "min-h-10 rounded border border-slate-700 px-3 py-1 text-xs text-slate-300 hover:bg-slate-800";

/** What each agent of a job answered (`GET /commands?job=`), and a command's full result
 * (a shell's output, a screenshot) on demand. Refreshed while the job runs. */
export function JobResults({ job }: { job: Job }) {
  const [commands, setCommands] = useState<Command[] | null>(null);
  const [opened, setOpened] = useState<Command | null>(null);
  const [error, setError] = useState("");

  const load = useCallback(() => {
    get<Command[]>(`/commands?job=${encodeURIComponent(job.id)}&limit=1000`)
      .then((list) => {
        setCommands([...list].sort((a, b) => a.agent.localeCompare(b.agent)));
        setError("");
      })
      .catch((exc: unknown) => setError(errorText(exc)));
  }, [job.id]);
  useEffect(() => {
    load();
    if (job.state !== "running") return undefined;
    const every = setInterval(load, 2000);
    return () => clearInterval(every);
  }, [load, job.state]);

  async function open(command: Command) {
    if (opened?.id === command.id) {
      setOpened(null);
      return;
    }
    try {
      setOpened(await get<Command>(`/commands/${encodeURIComponent(command.id)}`));
    } catch (exc) {
      setError(errorText(exc));
    }
  }

  if (error) return <p className="mt-2 text-sm text-red-400" data-testid="job-results-error">{error}</p>;
  if (commands === null) return <p className="mt-2 text-sm text-slate-400">Loading…</p>;
  if (commands.length === 0) return <p className="mt-2 text-sm text-slate-400">No command sent yet.</p>;
  return (
    <ul className="mt-2 divide-y divide-slate-800 rounded border border-slate-800" data-testid={`job-results-${job.id}`}>
      {commands.map((c) => (
        <li key={c.id} className="p-2 text-sm" data-testid={`job-result-${c.agent}`} data-state={c.state}>
          <div className="flex flex-wrap items-center gap-x-3 gap-y-1">
            <a href={`#/agents/${encodeURIComponent(c.agent)}`} className="font-medium text-sky-400 hover:underline">{c.agent}</a>
            <span className={`font-medium ${commandStateClass(c.state)}`}>{c.state}</span>
            <span className="min-w-0 break-words text-slate-400" data-testid="job-result-summary">{commandFailure(c) ?? commandSummary(c)}</span>
            {c.has_result && (
              <button type="button" className={`${BUTTON} ml-auto`} data-testid={`job-result-open-${c.agent}`} onClick={() => void open(c)}>
                {opened?.id === c.id ? "Hide result" : "Result"}
              </button>
            )}
          </div>
          {opened?.id === c.id && <CommandPanel run={{ command: opened, error: "", busy: false, start: async () => null }} />}
        </li>
      ))}
    </ul>
  );
}
