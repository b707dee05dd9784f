import { describe, expect, it } from "vitest";
import { backoffCeiling, backoffDelay } from "./backoff";

describe("reconnect backoff", () => {
  it("doubles from half a second up to a cap of 15 s", () => {
    expect([0, 1, 2, 3, 4, 5, 6].map((n) => backoffCeiling(n))).toEqual([500, 1000, 2000, 4000, 8000, 15000, 15000]);
    expect(backoffCeiling(1000)).toBe(15000);
  });
  it("waits between half the ceiling and the ceiling", () => {
    expect(backoffDelay(2, () => 0)).toBe(1000);
    expect(backoffDelay(2, () => 1)).toBe(2000);
    expect(backoffDelay(2, () => 0.5)).toBe(1500);
    expect(backoffDelay(0, () => 7)).toBe(500); // a bad random source is clamped
  });
});
