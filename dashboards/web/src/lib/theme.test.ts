import { describe, expect, it } from "vitest";
import { parseThemePref, resolveTheme, terminalColors, toggledPref } from "./theme";

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

/** WCAG contrast ratio of two #rrggbb colours (1 to 21). */
function contrast(a: string, b: string): number {
  const lum = (hex: string) => {
    const [r, g, bl] = [1, 3, 5].map((i) => {
      const c = parseInt(hex.slice(i, i + 2), 16) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

describe("the terminal's colours", () => {
  it("are light in the light theme and dark in the dark one, like the page", () => {
    expect(contrast(terminalColors("light").background, "#ffffff")).toBeLessThan(1.2);
    expect(contrast(terminalColors("dark").background, "#000000")).toBeLessThan(1.2);
  });

  it("keep text and every ANSI colour readable on the light background", () => {
    const { background, cursorAccent, selectionBackground, ...text } = terminalColors("light");
    expect(cursorAccent).toBe(background);
    expect(contrast(selectionBackground, background)).toBeLessThan(1.5); // a tint, text stays on it
    for (const [name, colour] of Object.entries(text)) {
      expect(contrast(colour, background), name).toBeGreaterThanOrEqual(4.5);
    }
  });

  it("keep text and every ANSI colour but black readable on the dark background", () => {
    const { background, cursorAccent, selectionBackground, black, ...text } = terminalColors("dark");
    expect(cursorAccent).toBe(background);
    expect(contrast(black, background)).toBeLessThan(2); // "black" is the background's shade
    expect(contrast(selectionBackground, background)).toBeLessThan(2.5);
    for (const [name, colour] of Object.entries(text)) {
      expect(contrast(colour, background), name).toBeGreaterThanOrEqual(4);
    }
  });
});
