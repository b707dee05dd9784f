// Light or dark: the system's choice unless the user picked one (remembered). Pure.

export type Theme = "light" | "dark";
export type ThemePref = "system" | Theme;

export const THEME_KEY = "arete.theme";

/** A stored preference; anything unknown (or nothing) means "follow the system". */
export function parseThemePref(stored: string | null | undefined): ThemePref {
  return stored === "light" || stored === "dark" ? stored : "system";
}

export function resolveTheme(pref: ThemePref, systemPrefersLight: boolean): Theme {
  if (pref !== "system") return pref;
  return systemPrefersLight ? "light" : "dark";
}

/**
 * The preference after pressing the toggle: the other theme than the one shown; when
 * that is the system's own choice, the dashboard goes back to following the system.
 */
export function toggledPref(pref: ThemePref, systemPrefersLight: boolean): ThemePref {
  const next: Theme = resolveTheme(pref, systemPrefersLight) === "light" ? "dark" : "light";
  return next === resolveTheme("system", systemPrefersLight) ? "system" : next;
}

/** The terminal's colours (xterm.js `ITheme`) for a theme: the page's own background and
 * text, and ANSI colours that stay readable on it (xterm's defaults assume black). */
export interface TerminalColors {
  background: string;
  foreground: string;
  cursor: string;
  cursorAccent: string;
  selectionBackground: string;
  black: string;
  red: string;
  green: string;
  yellow: string;
  blue: string;
  magenta: string;
  cyan: string;
  white: string;
  brightBlack: string;
  brightRed: string;
  brightGreen: string;
  brightYellow: string;
  brightBlue: string;
  brightMagenta: string;
  brightCyan: string;
  brightWhite: string;
}

const DARK_TERMINAL: TerminalColors = {
  background: "#020617", // slate-950, the dark page
  foreground: "#e2e8f0",
  cursor: "#e2e8f0",
  cursorAccent: "#020617",
  selectionBackground: "#334155",
  black: "#1e293b",
  red: "#f87171",
  green: "#4ade80",
  yellow: "#facc15",
  blue: "#60a5fa",
  magenta: "#e879f9",
  cyan: "#22d3ee",
  white: "#cbd5e1",
  brightBlack: "#64748b",
  brightRed: "#fca5a5",
  brightGreen: "#86efac",
  brightYellow: "#fde047",
  brightBlue: "#93c5fd",
  brightMagenta: "#f0abfc",
  brightCyan: "#67e8f9",
  brightWhite: "#f8fafc",
};

// On a light page "white" text would vanish: the grey scale is turned around, as the
// page's slate scale is, and the hues are darkened ("bright" ones most, as bold text).
const LIGHT_TERMINAL: TerminalColors = {
  background: "#f1f5f9", // the light page (index.css turns slate-950 into this)
  foreground: "#0f172a",
  cursor: "#0f172a",
  cursorAccent: "#f1f5f9",
  selectionBackground: "#bfdbfe",
  black: "#0f172a",
  red: "#b91c1c",
  green: "#15803d",
  yellow: "#92400e",
  blue: "#1d4ed8",
  magenta: "#a21caf",
  cyan: "#0e7490",
  white: "#475569",
  brightBlack: "#334155",
  brightRed: "#991b1b",
  brightGreen: "#166534",
  brightYellow: "#854d0e",
  brightBlue: "#1e40af",
  brightMagenta: "#86198f",
  brightCyan: "#155e75",
  brightWhite: "#1e293b",
};

export function terminalColors(theme: Theme): TerminalColors {
  return theme === "light" ? LIGHT_TERMINAL : DARK_TERMINAL;
}
