import { describe, expect, it } from "vitest";
import { commandSummary, containersOf, newerCommand, roleAllows, screenshotIsBlank, screenshotUrl } from "./commands";
import type { Command } from "./types";

function cmd(over: Partial<Command> = {}): Command {
  return {
    id: "c1", agent: "a", name: "restart", args: {}, state: "queued", actor: "ann", job_id: null,
    timeout_s: 10, created_at: 1, expires_at: 11, updated_at: 1, sent_at: null, accepted_at: null,
    finished_at: null, result: null, has_result: false, error_code: null, error_message: null, ...over,
  };
}

describe("roles", () => {
  it("lets higher roles do what lower roles can", () => {
    expect(roleAllows("admin", "operator")).toBe(true);
    expect(roleAllows("operator", "operator")).toBe(true);
    expect(roleAllows("viewer", "operator")).toBe(false);
    expect(roleAllows("operator", "admin")).toBe(false);
    expect(roleAllows("stranger", "viewer")).toBe(false);
  });
});

describe("command results", () => {
  it("lists containers of a finished docker_ps by name, skipping malformed ones", () => {
    const c = cmd({
      name: "docker_ps", state: "ok",
      result: { containers: [
        { id: "2", name: "web", image: "nginx", state: "running", status: "Up 3 hours" },
        { id: "1", name: "db", image: "pg", state: "exited", status: "Exited (0)" },
        { name: 5 }, "junk",
      ] },
    });
    expect(containersOf(c).map((x) => x.name)).toEqual(["db", "web"]);
    expect(containersOf(cmd({ name: "docker_ps", state: "running" }))).toEqual([]);
    expect(containersOf(cmd({ state: "ok", result: { containers: "no" } }))).toEqual([]);
  });

  it("sums up how a command ended", () => {
    expect(commandSummary(cmd({ state: "ok", result: { message: "restarting" } }))).toBe("restarting");
    expect(commandSummary(cmd({ state: "ok", result: { width: 800, height: 600, png_b64: "" } }))).toBe("screenshot 800×600");
    expect(commandSummary(cmd({ state: "timed_out", error_code: "no_reply" }))).toBe("timed out: no_reply");
    expect(commandSummary(cmd({ state: "failed", error_code: "docker", error_message: "no engine" }))).toBe(
      "failed: docker: no engine",
    );
  });

  it("tells a blank screen apart from a drawn one", () => {
    const blank = cmd({ name: "screenshot", state: "ok", result: { width: 8, height: 6, png_b64: "", blank: true } });
    const drawn = cmd({ name: "screenshot", state: "ok", result: { width: 8, height: 6, png_b64: "" } });
    expect(screenshotIsBlank(blank)).toBe(true);
    expect(commandSummary(blank)).toBe("screenshot 8×6 (blank screen)");
    expect(screenshotIsBlank(drawn)).toBe(false);
    expect(screenshotIsBlank(cmd({ name: "screenshot", state: "failed", result: { blank: true } }))).toBe(false);
  });
  it("offers the screenshot only once the screenshot command succeeded", () => {
    expect(screenshotUrl(cmd({ name: "screenshot", state: "ok", id: "x/1" }))).toBe("/commands/x%2F1/screenshot");
    expect(screenshotUrl(cmd({ name: "screenshot", state: "running" }))).toBeNull();
    expect(screenshotUrl(cmd({ name: "restart", state: "ok" }))).toBeNull();
  });

  it("keeps the newer record when updates arrive out of order", () => {
    const running = cmd({ state: "running", updated_at: 5 });
    const ok = cmd({ state: "ok", updated_at: 6 });
    expect(newerCommand(running, ok).state).toBe("ok");
    expect(newerCommand(ok, running).state).toBe("ok");
    expect(newerCommand(null, running)).toBe(running);
    expect(newerCommand(running, cmd({ id: "c2", updated_at: 1 })).id).toBe("c2");
  });
});
