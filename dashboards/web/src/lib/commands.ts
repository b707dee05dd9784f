// Reading command records: results of known commands, and what to show. Pure.

import type { Command, ContainerInfo } from "./types";

/** Which role a command needs, mirroring the API's rules, to hide buttons one cannot use. */
export function roleAllows(role: string, need: "viewer" | "operator" | "admin"): boolean {
  const rank: Record<string, number> = { viewer: 0, operator: 1, admin: 2 };
  return (rank[role] ?? -1) >= rank[need]!;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Containers of a finished `docker_ps`, skipping entries that are not well formed. */
export function containersOf(command: Command | null | undefined): ContainerInfo[] {
  if (!command || command.state !== "ok" || !isObject(command.result)) return [];
  const list = command.result.containers;
  if (!Array.isArray(list)) return [];
  return list
    .filter(isObject)
    .filter((c) => typeof c.id === "string" && typeof c.name === "string")
    .map((c) => ({
      id: String(c.id),
      name: String(c.name),
      image: typeof c.image === "string" ? c.image : "",
      state: typeof c.state === "string" ? c.state : "",
      status: typeof c.status === "string" ? c.status : "",
    }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** One line saying how a command ended (or where it is). */
export function commandSummary(command: Command): string {
  if (command.state === "ok") {
    const r = command.result;
    if (isObject(r) && typeof r.message === "string") return r.message;
    if (isObject(r) && typeof r.width === "number" && typeof r.height === "number") {
      return `screenshot ${r.width}×${r.height}${r.blank === true ? " (blank screen)" : ""}`;
    }
    if (isObject(r) && Array.isArray(r.containers)) return `${r.containers.length} containers`;
    if (isObject(r) && "exit_code" in r) return `exit code ${String(r.exit_code)}`;
    return "done";
  }
  const parts = [command.state.replace("_", " ")];
  if (command.error_code) parts.push(command.error_code);
  if (command.error_message) parts.push(command.error_message);
  return parts.join(": ");
}

/** URL of a finished screenshot, or null while there is none to show. */
export function screenshotUrl(command: Command | null | undefined): string | null {
  if (!command || command.name !== "screenshot" || command.state !== "ok") return null;
  return `/commands/${encodeURIComponent(command.id)}/screenshot`;
}

/** Whether a finished screenshot shows a screen of one colour (see `blank` in docs/topics.md). */
export function screenshotIsBlank(command: Command | null | undefined): boolean {
  if (!command || screenshotUrl(command) === null) return false;
  return isObject(command.result) && command.result.blank === true;
}

/** Merge a newer record of the same command over an older one (ws events may reorder). */
export function newerCommand(current: Command | null, update: Command): Command {
  if (!current || current.id !== update.id) return update;
  return update.updated_at >= current.updated_at ? update : current;
}
