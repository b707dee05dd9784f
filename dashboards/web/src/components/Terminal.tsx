import { FitAddon } from "@xterm/addon-fit";
import { Terminal as XTerm } from "@xterm/xterm";
import { useEffect, useRef, useState } from "react";
import { wsUrl } from "../lib/live";
import { terminalColors } from "../lib/theme";
import { currentTheme, onThemeChange } from "../theme";

type TermStatus = "connecting" | "open" | "closed";

/** xterm.js relayed to the agent's PTY over `WS /agents/{id}/terminal`. */
export function Terminal({ agent }: { agent: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState<TermStatus>("connecting");
  const [note, setNote] = useState("");
  const [session, setSession] = useState(0); // bumping it opens a new session

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    setStatus("connecting");
    setNote("");
    const term = new XTerm({
      cursorBlink: true,
      fontSize: 13,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      theme: terminalColors(currentTheme()),
      convertEol: false,
    });
    // The page's theme, and every change of it (the toggle, the system), without a new session.
    const offTheme = onThemeChange((theme) => {
      term.options.theme = terminalColors(theme);
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(el);
    fit.fit();
    const ws = new WebSocket(wsUrl(`/agents/${encodeURIComponent(agent)}/terminal`, window.location));
    const send = (msg: unknown) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    };
    ws.onopen = () => {
      setStatus("open");
      send({ type: "resize", cols: term.cols, rows: term.rows });
      term.focus();
    };
    ws.onmessage = (m) => {
      let msg: { type?: string; data?: unknown; code?: unknown };
      try {
        msg = JSON.parse(String(m.data)) as typeof msg;
      } catch {
        return;
      }
      if (msg.type === "output" && typeof msg.data === "string") term.write(msg.data);
      else if (msg.type === "exit") {
        setNote(`session ended (exit code ${String(msg.code)})`);
        setStatus("closed");
      }
    };
    ws.onclose = (e) => {
      setStatus("closed");
      setNote((n) => n || `connection closed${e.reason ? `: ${e.reason}` : ` (code ${e.code})`}`);
    };
    const input = term.onData((data) => send({ type: "input", data }));
    const resized = term.onResize(({ cols, rows }) => send({ type: "resize", cols, rows }));
    const observer = new ResizeObserver(() => {
      try {
        fit.fit();
      } catch {
        // the element is being removed
      }
    });
    observer.observe(el);
    return () => {
      offTheme();
      observer.disconnect();
      input.dispose();
      resized.dispose();
      ws.close();
      term.dispose();
    };
  }, [agent, session]);

  return (
    <div>
      <div className="mb-2 flex items-center gap-3 text-sm">
        <span data-testid="terminal-status" data-status={status} className="text-slate-400">
          {status === "open" ? "connected" : status}
        </span>
        {note && <span className="text-slate-500">{note}</span>}
        {status === "closed" && (
          <button
            type="button"
            data-testid="terminal-reconnect"
            onClick={() => setSession((s) => s + 1)}
            className="rounded border border-slate-600 px-3 py-1 text-slate-200 hover:bg-slate-800"
          >
            New session
          </button>
        )}
      </div>
      <div ref={box} data-testid="terminal" className="h-[60vh] rounded border border-slate-800 bg-slate-950 p-2" />
    </div>
  );
}
