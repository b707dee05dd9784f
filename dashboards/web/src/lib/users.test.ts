import { describe, expect, it } from "vitest";
import { isLastAdmin, userRequest, type User } from "./users";

const user = (name: string, role: User["role"]): User => ({ name, role, created_at: 1, has_password: true, tokens: 1 });

describe("adding a user", () => {
  const users = [user("admin", "admin")];

  it("builds the POST /users body, the password optional", () => {
    expect(userRequest({ name: " ci-bot ", role: "operator", password: "" }, users)).toEqual({ ok: true, body: { name: "ci-bot", role: "operator" } });
    expect(userRequest({ name: "ann", role: "viewer", password: "long enough" }, users)).toEqual({
      ok: true, body: { name: "ann", role: "viewer", password: "long enough" },
    });
  });

  it("refuses what the API would, with a sentence", () => {
    expect(userRequest({ name: "", role: "viewer", password: "" }, users).ok).toBe(false);
    expect(userRequest({ name: "-x", role: "viewer", password: "" }, users).ok).toBe(false);
    expect(userRequest({ name: "admin", role: "viewer", password: "" }, users)).toEqual({ ok: false, error: "There is already a user admin." });
    expect(userRequest({ name: "bob", role: "root", password: "" }, users)).toEqual({ ok: false, error: "Choose a role." });
    expect(userRequest({ name: "bob", role: "viewer", password: "short" }, users)).toEqual({ ok: false, error: "A password has at least 8 characters." });
  });
});

describe("the last admin", () => {
  it("is the only admin left", () => {
    const a = user("admin", "admin");
    expect(isLastAdmin(a, [a, user("v", "viewer")])).toBe(true);
    expect(isLastAdmin(a, [a, user("b", "admin")])).toBe(false);
    expect(isLastAdmin(user("v", "viewer"), [a])).toBe(false);
  });
});
