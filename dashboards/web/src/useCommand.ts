// Start a command and follow it to its final state: ws `command` events as they come,
// and a 1 s poll of GET /commands/{id} in case an event was missed.

import { useCallback, useEffect, useRef, useState } from "react";
import { errorText, get, post } from "./lib/api";
import { newerCommand } from "./lib/commands";
import type { LiveSocket } from "./lib/live";
import { isFinalCommandState } from "./lib/states";
import type { Command } from "./lib/types";

export interface CommandRun {
  command: Command | null;
  error: string;
  busy: boolean;
  start: (path: string, body?: unknown) => Promise<Command | null>;
}

export function useCommand(live: LiveSocket): CommandRun {
  const [command, setCommand] = useState<Command | null>(null);
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const idRef = useRef<string | null>(null);

  useEffect(
    () =>
      live.onEvent((event) => {
        if (event.kind !== "command") return;
        const update = event.data as unknown as Command;
        if (update.id && update.id === idRef.current) setCommand((c) => newerCommand(c, update));
      }),
    [live],
  );

  const id = command?.id;
  const final = command ? isFinalCommandState(command.state) : true;
  useEffect(() => {
    if (!id || final) return;
    const timer = setInterval(() => {
      get<Command>(`/commands/${encodeURIComponent(id)}`)
        .then((c) => setCommand((cur) => newerCommand(cur, c)))
        .catch(() => {});
    }, 1000);
    return () => clearInterval(timer);
  }, [id, final]);

  const start = useCallback(async (path: string, body: unknown = {}) => {
    setBusy(true);
    setError("");
    setCommand(null);
    idRef.current = null;
    try {
      const c = await post<Command>(path, body);
      idRef.current = c.id;
      setCommand(c);
      return c;
    } catch (exc) {
      setError(errorText(exc));
      return null;
    } finally {
      setBusy(false);
    }
  }, []);

  return { command, error, busy, start };
}
