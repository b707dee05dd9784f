import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LiveSocket, parseLiveEvent, wsUrl } from "./live";
import type { LiveEvent } from "./types";

describe("ws helpers", () => {
  it("builds ws and wss URLs on the page's host", () => {
    expect(wsUrl("/ws", { protocol: "http:", host: "h:8080" })).toBe("ws://h:8080/ws");
    expect(wsUrl("/ws", { protocol: "https:", host: "h" })).toBe("wss://h/ws");
  });
  it("parses events and refuses malformed ones", () => {
    expect(parseLiveEvent('{"kind":"agent","ts":1,"data":{"id":"a"}}')).toEqual({ kind: "agent", ts: 1, data: { id: "a" } });
    expect(parseLiveEvent("not json")).toBeNull();
    expect(parseLiveEvent('{"kind":"agent"}')).toBeNull();
    expect(parseLiveEvent('{"data":{}}')).toBeNull();
    expect(parseLiveEvent(new ArrayBuffer(2))).toBeNull();
  });
});

/** A WebSocket stand-in the test opens, feeds and closes by hand. */
class FakeSocket {
  static OPEN = 1;
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: unknown[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((m: { data: unknown }) => void) | null = null;
  onclose: ((e?: { code?: number }) => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(text: string) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
    this.onclose?.();
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  drop(code = 1006) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
}

describe("LiveSocket", () => {
  beforeEach(() => {
    FakeSocket.all = [];
    vi.useFakeTimers();
    vi.stubGlobal("WebSocket", FakeSocket);
  });
  afterEach(() => {
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("reports a lost connection, reconnects with backoff and re-subscribes", () => {
    const live = new LiveSocket("ws://h/ws", () => 1); // the longest delay of each attempt
    const statuses: string[] = [];
    let opens = 0;
    live.onStatus((s) => statuses.push(s));
    live.onOpen(() => (opens += 1));
    live.start();
    FakeSocket.all[0]!.open();
    const release = live.subscribe(["a", "b"]);
    expect(FakeSocket.all[0]!.sent).toEqual([{ subscribe: ["a", "b"] }]);

    FakeSocket.all[0]!.drop();
    expect(live.status).toBe("lost");
    vi.advanceTimersByTime(499);
    expect(FakeSocket.all).toHaveLength(1); // not before the first backoff delay
    vi.advanceTimersByTime(600);
    expect(FakeSocket.all).toHaveLength(2);
    FakeSocket.all[1]!.drop(); // a failed attempt waits longer
    vi.advanceTimersByTime(999);
    expect(FakeSocket.all).toHaveLength(2);
    vi.advanceTimersByTime(1100);
    expect(FakeSocket.all).toHaveLength(3);
    FakeSocket.all[2]!.open();
    expect(FakeSocket.all[2]!.sent).toEqual([{ subscribe: ["a", "b"] }]);
    expect(statuses).toEqual(["open", "lost", "open"]);
    expect(opens).toBe(2);

    release();
    expect(FakeSocket.all[2]!.sent.at(-1)).toEqual({ unsubscribe: ["a", "b"] });
    live.stop();
  });

  it("keeps a stream while another view still wants it", () => {
    const live = new LiveSocket("ws://h/ws");
    live.start();
    const s = FakeSocket.all[0]!;
    s.open();
    const first = live.subscribe(["a"]);
    const second = live.subscribe(["a"]);
    expect(s.sent).toEqual([{ subscribe: ["a"] }]);
    first();
    expect(s.sent).toHaveLength(1);
    second();
    expect(s.sent.at(-1)).toEqual({ unsubscribe: ["a"] });
    live.stop();
  });

  it("delivers well-formed events and stops reconnecting once stopped", () => {
    const live = new LiveSocket("ws://h/ws");
    const got: LiveEvent[] = [];
    live.onEvent((e) => got.push(e));
    live.start();
    const s = FakeSocket.all[0]!;
    s.open();
    s.onmessage?.({ data: '{"kind":"alert","ts":2,"data":{"change":"fired"}}' });
    s.onmessage?.({ data: "garbage" });
    expect(got.map((e) => e.kind)).toEqual(["alert"]);
    live.stop();
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1);
  });

  it("stops and says so when the server signs the user out (4401)", () => {
    const live = new LiveSocket("ws://h/ws");
    let signedOut = 0;
    live.onSignedOut(() => (signedOut += 1));
    live.start();
    FakeSocket.all[0]!.open();
    FakeSocket.all[0]!.drop(4401);
    expect(signedOut).toBe(1);
    expect(live.status).toBe("lost");
    vi.advanceTimersByTime(60_000);
    expect(FakeSocket.all).toHaveLength(1); // no reconnect: signing in again is the way
  });
});
