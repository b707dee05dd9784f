import { describe, expect, it } from "vitest";
import { parseHash, routeHash } from "./router";

describe("the pages for jobs, users, rules and notifiers", () => {
  it("parse and build their hashes", () => {
    for (const page of ["jobs", "users", "rules", "notifiers"] as const) {
      expect(parseHash(`#/${page}`)).toEqual({ page });
      expect(routeHash({ page })).toBe(`#/${page}`);
    }
    expect(parseHash("#/rules?x=1")).toEqual({ page: "rules" });
  });
});
