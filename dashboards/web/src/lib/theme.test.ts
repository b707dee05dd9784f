import { describe, expect, it } from "vitest";
import { parseThemePref, resolveTheme, toggledPref } from "./theme";

describe("the theme", () => {
  it("follows the system when nothing was chosen", () => {
    expect(resolveTheme("system", true)).toBe("light");
    expect(resolveTheme("system", false)).toBe("dark");
  });

  it("keeps a chosen theme whatever the system prefers", () => {
    expect(resolveTheme("dark", true)).toBe("dark");
    expect(resolveTheme("light", false)).toBe("light");
  });

  it("reads a stored preference and treats anything else as following the system", () => {
    expect(parseThemePref("light")).toBe("light");
    expect(parseThemePref("dark")).toBe("dark");
    expect(parseThemePref(null)).toBe("system");
    expect(parseThemePref("purple")).toBe("system");
  });

  it("toggles to the other theme, and back to following the system", () => {
    // System light: the first press shows dark, the second light again (the system's).
    expect(toggledPref("system", true)).toBe("dark");
    expect(toggledPref("dark", true)).toBe("system");
    // System dark.
    expect(toggledPref("system", false)).toBe("light");
    expect(toggledPref("light", false)).toBe("system");
    // A stored choice the system now agrees with still flips what is shown.
    expect(resolveTheme(toggledPref("light", true), true)).toBe("dark");
  });
});
