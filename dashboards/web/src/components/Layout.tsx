import type { ReactNode } from "react";
import { useApp, useLiveStatus } from "../context";
import { navLinksFor } from "../lib/nav";
import type { Route } from "../lib/router";
import { ThemeToggle } from "./ThemeToggle";

export function Layout({ route, children }: { route: Route; children: ReactNode }) {
  const { me, live, logout } = useApp();
  const status = useLiveStatus(live);
  return (
    <div className="min-h-full flex flex-col">
      <header className="flex flex-wrap items-center gap-x-6 gap-y-2 border-b border-slate-800 bg-slate-900 px-3 py-2 sm:px-6 sm:py-3">
        <a href="#/" className="text-lg font-semibold tracking-wide text-slate-100">
          Areté <span className="hidden font-normal text-slate-400 sm:inline">Mission Control</span>
        </a>
        <nav className="order-last flex w-full flex-wrap gap-1 md:order-none md:w-auto">
          {navLinksFor(me.role).map((l) => {
            const active = route.page === l.page || (l.page === "fleet" && route.page === "agent");
            return (
              <a
                key={l.page}
                href={l.href}
                data-testid={`nav-${l.page}`}
                className={`rounded px-3 py-1.5 text-sm ${active ? "bg-slate-700 text-slate-50" : "text-slate-300 hover:bg-slate-800"}`}
              >
                {l.label}
              </a>
            );
          })}
        </nav>
        <div className="ml-auto flex flex-wrap items-center gap-x-3 gap-y-1 text-sm sm:gap-x-4">
          <span className="flex items-center gap-2 text-slate-400" data-testid="ws-status" data-status={status}>
            <span className={`inline-block h-2 w-2 rounded-full ${status === "open" ? "bg-emerald-500" : status === "lost" ? "bg-red-500" : "bg-amber-400"}`} />
            {status === "open" ? "live" : status}
          </span>
          <span className="text-slate-300" data-testid="current-user">
            {me.user} <span className="hidden text-slate-500 sm:inline">({me.role})</span>
          </span>
          <ThemeToggle />
          <button
            type="button"
            onClick={logout}
            data-testid="logout"
            className="rounded border border-slate-700 px-3 py-1 text-slate-300 hover:bg-slate-800"
          >
            Log out
          </button>
        </div>
      </header>
      {status === "lost" && (
        <div
          role="status"
          data-testid="ws-banner"
          className="bg-amber-600 px-3 py-2 text-sm font-medium text-slate-950 sm:px-6"
        >
          Live updates lost — reconnecting…
        </div>
      )}
      <main className="min-w-0 flex-1 px-3 py-4 sm:px-6 sm:py-5">{children}</main>
    </div>
  );
}
