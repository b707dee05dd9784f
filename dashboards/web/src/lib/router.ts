// A tiny hash router: the API owns real paths (/agents, /alerts, ...), the dashboard
// lives at / and keeps its place after "#". Pure parsing and building.

export type Route =
  | { page: "fleet" }
  | { page: "agent"; id: string; tab: AgentTab }
  | { page: "alerts" }
  | { page: "history" }
  | { page: "jobs" }
  | { page: "users" }
  | { page: "rules" }
  | { page: "notifiers" }
  | { page: "login" };

export type AgentTab = "overview" | "containers" | "terminal";
const TABS: readonly AgentTab[] = ["overview", "containers", "terminal"];

export function parseHash(hash: string): Route {
  const path = hash.replace(/^#/, "").replace(/^\/+/, "").split("?")[0] ?? "";
  const parts = path.split("/").filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const [head, id, tab] = parts;
  if (head === "agents" && id) {
    return { page: "agent", id, tab: TABS.includes(tab as AgentTab) ? (tab as AgentTab) : "overview" };
  }
  if (head === "alerts") return { page: "alerts" };
  if (head === "history") return { page: "history" };
  if (head === "jobs" || head === "users" || head === "rules" || head === "notifiers") return { page: head };
  if (head === "login") return { page: "login" };
  return { page: "fleet" };
}

export function routeHash(route: Route): string {
  switch (route.page) {
    case "agent":
      return `#/agents/${encodeURIComponent(route.id)}${route.tab === "overview" ? "" : `/${route.tab}`}`;
    case "fleet":
      return "#/";
    default:
      return `#/${route.page}`;
  }
}
