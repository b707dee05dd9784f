import { useCallback, useEffect, useMemo, useReducer, useState } from "react";
import { Layout } from "./components/Layout";
import { AppContext, type AppContextValue } from "./context";
import { ApiError, get, post, setUnauthorizedHandler } from "./lib/api";
import { EMPTY_FLEET, fleetReducer } from "./lib/fleet";
import { LiveSocket, wsUrl } from "./lib/live";
import { parseHash, type Route } from "./lib/router";
import type { Agent, Me } from "./lib/types";
import { AgentPage } from "./pages/AgentPage";
import { AlertsPage } from "./pages/AlertsPage";
import { FleetPage } from "./pages/FleetPage";
import { HistoryPage } from "./pages/HistoryPage";
import { JobsPage } from "./pages/JobsPage";
import { NotifiersPage } from "./pages/NotifiersPage";
import { RulesPage } from "./pages/RulesPage";
import { UsersPage } from "./pages/UsersPage";
import { LoginPage } from "./pages/LoginPage";
import { PasswordPage } from "./pages/PasswordPage";

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(window.location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined); // undefined = asking
  const route = useRoute();

  useEffect(() => {
    setUnauthorizedHandler(() => setMe(null));
    get<Me>("/auth/me")
      .then(setMe)
      .catch((exc: unknown) => {
        if (!(exc instanceof ApiError) || exc.status !== 401) console.warn("auth/me failed", exc);
        setMe(null);
      });
  }, []);

  if (me === undefined) {
    return <div className="p-8 text-slate-400" data-testid="loading">Loading…</div>;
  }
  if (me === null) return <LoginPage onLogin={setMe} />;
  if (me.must_change_password) return <PasswordPage me={me} onChanged={setMe} />;
  return <Authenticated me={me} route={route} onLogout={() => setMe(null)} />;
}

function Authenticated({ me, route, onLogout }: { me: Me; route: Route; onLogout: () => void }) {
  const live = useMemo(() => new LiveSocket(wsUrl("/ws", window.location)), []);
  const [fleet, dispatchFleet] = useReducer(fleetReducer, EMPTY_FLEET);

  const reloadFleet = useCallback(() => {
    get<Agent[]>("/agents")
      .then((agents) => dispatchFleet({ type: "loaded", agents }))
      .catch((exc: unknown) => console.warn("agents load failed", exc));
  }, []);

  useEffect(() => {
    live.start();
    const offEvent = live.onEvent((event) => {
      dispatchFleet({ type: "event", event });
      if (event.kind === "alert") scheduleReload();
    });
    // After a reconnect, whatever changed while we were away is reloaded.
    const offOpen = live.onOpen(() => reloadFleet());
    // The session ended or the token was revoked while the page was open: sign in again.
    const offSignedOut = live.onSignedOut(onLogout);
    // Alert counts per agent come with the list: reload it shortly after alert changes.
    let pending: ReturnType<typeof setTimeout> | null = null;
    function scheduleReload() {
      if (pending) return;
      pending = setTimeout(() => {
        pending = null;
        reloadFleet();
      }, 1000);
    }
    reloadFleet();
    const refresh = setInterval(reloadFleet, 30_000);
    return () => {
      offEvent();
      offOpen();
      offSignedOut();
      clearInterval(refresh);
      if (pending) clearTimeout(pending);
      live.stop();
    };
  }, [live, reloadFleet]);

  const logout = useCallback(() => {
    post("/auth/logout").finally(onLogout);
  }, [onLogout]);

  const value: AppContextValue = { me, live, fleet, dispatchFleet, reloadFleet, logout };
  return (
    <AppContext.Provider value={value}>
      <Layout route={route}>
        {route.page === "agent" ? (
          <AgentPage key={route.id} id={route.id} tab={route.tab} />
        ) : route.page === "alerts" ? (
          <AlertsPage />
        ) : route.page === "history" ? (
          <HistoryPage />
        ) : route.page === "jobs" ? (
          <JobsPage />
        ) : route.page === "users" ? (
          <UsersPage />
        ) : route.page === "rules" ? (
          <RulesPage />
        ) : route.page === "notifiers" ? (
          <NotifiersPage />
        ) : (
          <FleetPage />
        )}
      </Layout>
    </AppContext.Provider>
  );
}
