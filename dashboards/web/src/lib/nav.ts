// The header's links, and which of them a role sees. Pure.

import { roleAllows } from "./commands";
import type { Route } from "./router";

export interface NavLink {
  page: Route["page"];
  href: string;
  label: string;
  /** The lowest role the page's API answers (GET /users is admin, GET /notifiers operator). */
  role: "viewer" | "operator" | "admin";
}

export const NAV_LINKS: readonly NavLink[] = [
  { page: "fleet", href: "#/", label: "Fleet", role: "viewer" },
  { page: "alerts", href: "#/alerts", label: "Alerts", role: "viewer" },
  { page: "history", href: "#/history", label: "History", role: "viewer" },
  { page: "jobs", href: "#/jobs", label: "Jobs", role: "viewer" },
  { page: "rules", href: "#/rules", label: "Rules", role: "viewer" },
  { page: "notifiers", href: "#/notifiers", label: "Notifiers", role: "operator" },
  { page: "users", href: "#/users", label: "Users", role: "admin" },
];

/** The links a user of `role` sees: a page whose API would refuse them is not offered. */
export function navLinksFor(role: string): NavLink[] {
  return NAV_LINKS.filter((link) => roleAllows(role, link.role));
}
