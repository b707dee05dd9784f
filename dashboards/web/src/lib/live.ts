// The `/ws` connection: one socket for the app, reconnected with backoff, re-sending
// the metric subscriptions after each reconnect.

import { backoffDelay } from "./backoff";
import type { LiveEvent } from "./types";

export type LiveStatus = "connecting" | "open" | "lost";

/** ws:// or wss:// URL of `path` on the page's own host. */
export function wsUrl(path: string, loc: { protocol: string; host: string }): string {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

/** Parse one server message; null when it is not a well-formed event. */
export function parseLiveEvent(text: unknown): LiveEvent | null {
  if (typeof text !== "string") return null;
  try {
    const v = JSON.parse(text) as Partial<LiveEvent>;
    if (typeof v !== "object" || v === null || typeof v.kind !== "string") return null;
    if (typeof v.data !== "object" || v.data === null) return null;
    return { kind: v.kind, ts: typeof v.ts === "number" ? v.ts : Date.now() / 1000, data: v.data };
  } catch {
    return null;
  }
}

type Listener<T> = (value: T) => void;

/** Close code of a websocket whose session or token ended (web_api/routers/ws.py). */
export const CLOSE_SIGNED_OUT = 4401;

export class LiveSocket {
  status: LiveStatus = "connecting";
  private socket: WebSocket | null = null;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private readonly subs = new Map<string, number>(); // agent id → how many views want it
  private readonly eventListeners = new Set<Listener<LiveEvent>>();
  private readonly statusListeners = new Set<Listener<LiveStatus>>();
  private readonly openListeners = new Set<Listener<void>>();
  private readonly signedOutListeners = new Set<Listener<void>>();

  constructor(
    private readonly url: string,
    private readonly random: () => number = Math.random,
  ) {}

  start(): void {
    this.closed = false;
    this.connect();
  }

  stop(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.close();
    this.socket = null;
  }

  onEvent(listener: Listener<LiveEvent>): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  onStatus(listener: Listener<LiveStatus>): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Called after every (re)connect: views reload what they may have missed. */
  /** The server closed the socket because the user's session or token ended (4401). */
  onSignedOut(listener: Listener<void>): () => void {
    this.signedOutListeners.add(listener);
    return () => this.signedOutListeners.delete(listener);
  }

  onOpen(listener: Listener<void>): () => void {
    this.openListeners.add(listener);
    return () => this.openListeners.delete(listener);
  }

  /** Ask for the 1 s metric streams of `agents`; the returned function gives them back. */
  subscribe(agents: string[]): () => void {
    const fresh = agents.filter((a) => {
      const n = this.subs.get(a) ?? 0;
      this.subs.set(a, n + 1);
      return n === 0;
    });
    if (fresh.length) this.send({ subscribe: fresh });
    return () => {
      const gone = agents.filter((a) => {
        const n = (this.subs.get(a) ?? 1) - 1;
        if (n <= 0) this.subs.delete(a);
        else this.subs.set(a, n);
        return n <= 0;
      });
      if (gone.length) this.send({ unsubscribe: gone });
    };
  }

  private send(message: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private setStatus(status: LiveStatus): void {
    if (status === this.status) return;
    this.status = status;
    this.statusListeners.forEach((l) => l(status));
  }

  private connect(): void {
    if (this.closed) return;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.retry();
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.setStatus("open");
      if (this.subs.size) this.send({ subscribe: [...this.subs.keys()] });
      this.openListeners.forEach((l) => l());
    };
    socket.onmessage = (message) => {
      const event = parseLiveEvent(message.data);
      if (event) this.eventListeners.forEach((l) => l(event));
    };
    socket.onclose = (event?: { code?: number }) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (event?.code === CLOSE_SIGNED_OUT) {
        // Reconnecting cannot help: signing in again can.
        this.closed = true;
        this.setStatus("lost");
        this.signedOutListeners.forEach((l) => l());
        return;
      }
      this.retry();
    };
  }

  private retry(): void {
    if (this.closed) return;
    this.setStatus("lost");
    const delay = backoffDelay(this.attempt, this.random);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
