// What every page shares: who is logged in, the live socket and the fleet state.

import { createContext, useContext, useEffect, useState, type Dispatch } from "react";
import type { FleetAction, FleetState } from "./lib/fleet";
import type { LiveSocket, LiveStatus } from "./lib/live";
import type { Me } from "./lib/types";

export interface AppContextValue {
  me: Me;
  live: LiveSocket;
  fleet: FleetState;
  dispatchFleet: Dispatch<FleetAction>;
  reloadFleet: () => void;
  logout: () => void;
}

export const AppContext = createContext<AppContextValue | null>(null);

export function useApp(): AppContextValue {
  const value = useContext(AppContext);
  if (!value) throw new Error("useApp outside AppContext");
  return value;
}

export function useLiveStatus(live: LiveSocket): LiveStatus {
  const [status, setStatus] = useState(live.status);
  useEffect(() => {
    setStatus(live.status);
    return live.onStatus(setStatus);
  }, [live]);
  return status;
}

/** Seconds since the epoch, re-rendered every `everyMs`, for "3 s ago" texts. */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(() => Date.now() / 1000);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now() / 1000), everyMs);
    return () => clearInterval(t);
  }, [everyMs]);
  return now;
}
