import { describe, expect, it } from "vitest";
import { ApiError, errorFromBody, errorText } from "./api";

describe("API errors", () => {
  it("reads the {error, detail} body", () => {
    const e = errorFromBody(403, { error: "forbidden", detail: "needs operator" });
    expect(e).toBeInstanceOf(ApiError);
    expect([e.status, e.code, e.detail]).toEqual([403, "forbidden", "needs operator"]);
    expect(errorText(e)).toBe("forbidden: needs operator");
  });
  it("copes with bodies that are not the contract's", () => {
    expect(errorFromBody(502, "<html>bad gateway</html>").code).toBe("http_502");
    expect(errorFromBody(422, { detail: [{ loc: ["x"] }] }).detail).toContain("loc");
    expect(errorFromBody(500, null).message).toBe("http_500");
  });
});
