import { commandSummary, screenshotIsBlank, screenshotUrl } from "../lib/commands";
import { formatDuration, formatTime } from "../lib/format";
import { commandFailure } from "../lib/sentences";
import { shellOutput } from "../lib/shell";
import { commandStateClass, isFinalCommandState } from "../lib/states";
import type { CommandRun } from "../useCommand";

/** The state and result of the command just started, with its screenshot if it took one. */
export function CommandPanel({ run }: { run: CommandRun }) {
  const c = run.command;
  if (run.error) {
    return <p className="mt-3 text-sm text-red-400" data-testid="command-error">{run.error}</p>;
  }
  if (!c) return null;
  const image = screenshotUrl(c);
  const output = shellOutput(c);
  const took = c.finished_at != null ? formatDuration(c.finished_at - c.created_at) : null;
  return (
    <div className="mt-3 text-sm" data-testid="command-result" data-command-id={c.id}>
      <div className="flex flex-wrap items-center gap-3">
        <span className="text-slate-300">{c.name}</span>
        <span className={`font-medium ${commandStateClass(c.state)}`} data-testid="command-state" data-state={c.state}>
          {c.state}
        </span>
        {!isFinalCommandState(c.state) && <span className="animate-pulse text-slate-500">…</span>}
        <span className="text-slate-400" data-testid="command-summary">{commandFailure(c) ?? commandSummary(c)}</span>
        <span className="ml-auto text-xs text-slate-500">
          {formatTime(c.created_at)} by {c.actor}{took ? ` · ${took}` : ""}
        </span>
      </div>
      {output && (
        <div className="mt-2 space-y-1" data-testid="shell-output" data-exit-code={output.exitCode ?? ""}>
          <p className="text-xs text-slate-400">
            exit code {output.exitCode ?? "none"}{output.note ? ` · ${output.note}` : ""}
          </p>
          {output.stdout && <pre className="max-h-80 overflow-auto whitespace-pre-wrap break-all rounded bg-slate-950 p-2 font-mono text-xs text-slate-200" data-testid="shell-stdout">{output.stdout}</pre>}
          {output.stderr && <pre className="max-h-40 overflow-auto whitespace-pre-wrap break-all rounded bg-slate-950 p-2 font-mono text-xs text-amber-300" data-testid="shell-stderr">{output.stderr}</pre>}
        </div>
      )}
      {image && screenshotIsBlank(c) && (
        <p className="mt-3 text-sm text-amber-300" data-testid="screenshot-blank">
          The screen is a single colour: nothing is drawn on it, it is blanked or locked, or the
          agent runs outside the desktop session and cannot see it.
        </p>
      )}
      {image && (
        <a href={image} target="_blank" rel="noreferrer" className="mt-3 block">
          <img
            src={image}
            alt={`Screenshot of ${c.agent}`}
            data-testid="screenshot-img"
            className="max-h-[70vh] max-w-full rounded border border-slate-700"
          />
        </a>
      )}
    </div>
  );
}
