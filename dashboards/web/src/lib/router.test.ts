import { describe, expect, it } from "vitest";
import { parseHash, routeHash } from "./router";

describe("hash router", () => {
  it("reads every page", () => {
    expect(parseHash("")).toEqual({ page: "fleet" });
    expect(parseHash("#/")).toEqual({ page: "fleet" });
    expect(parseHash("#/alerts")).toEqual({ page: "alerts" });
    expect(parseHash("#/history")).toEqual({ page: "history" });
    expect(parseHash("#/agents/web-1")).toEqual({ page: "agent", id: "web-1", tab: "overview" });
    expect(parseHash("#/agents/web-1/terminal")).toEqual({ page: "agent", id: "web-1", tab: "terminal" });
  });
  it("decodes ids and falls back on unknown tabs and pages", () => {
    expect(parseHash("#/agents/a%20b/bogus")).toEqual({ page: "agent", id: "a b", tab: "overview" });
    expect(parseHash("#/agents/%E0%A4%A")).toEqual({ page: "agent", id: "%E0%A4%A", tab: "overview" });
    expect(parseHash("#/nowhere")).toEqual({ page: "fleet" });
  });
  it("builds hashes that parse back to the same route", () => {
    for (const r of [
      { page: "fleet" as const },
      { page: "alerts" as const },
      { page: "agent" as const, id: "x/y z", tab: "containers" as const },
      { page: "agent" as const, id: "w", tab: "overview" as const },
    ]) {
      expect(parseHash(routeHash(r))).toEqual(r);
    }
  });
});
