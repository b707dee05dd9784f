import { describe, expect, it } from "vitest";
import { NAV_LINKS, navLinksFor } from "./nav";

const pages = (role: string) => navLinksFor(role).map((l) => l.page);

describe("the header's links", () => {
  it("offer a viewer only the pages it may read", () => {
    expect(pages("viewer")).toEqual(["fleet", "alerts", "history", "jobs", "rules"]);
  });

  it("add notifier health for an operator, and users for an admin", () => {
    expect(pages("operator")).toEqual(["fleet", "alerts", "history", "jobs", "rules", "notifiers"]);
    expect(pages("admin")).toEqual(NAV_LINKS.map((l) => l.page));
  });

  it("offer a role it does not know nothing (the API knows no such role either)", () => {
    expect(pages("root")).toEqual([]);
  });
});
