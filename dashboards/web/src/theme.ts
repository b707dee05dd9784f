// Applies the theme to the page (data-theme on <html>, read by index.css) and keeps it
// in step with the system's preference and the stored choice.

import { parseThemePref, resolveTheme, THEME_KEY, toggledPref, type Theme, type ThemePref } from "./lib/theme";

const query = typeof window !== "undefined" ? window.matchMedia?.("(prefers-color-scheme: light)") : undefined;
const listeners = new Set<(theme: Theme) => void>();
let pref: ThemePref = "system";

function systemLight(): boolean {
  return query?.matches ?? false;
}

export function currentTheme(): Theme {
  return resolveTheme(pref, systemLight());
}

function apply(): void {
  const theme = currentTheme();
  const root = document.documentElement;
  root.dataset.theme = theme;
  root.style.colorScheme = theme;
  for (const listener of listeners) listener(theme);
}

/** Called once before the first render; follows the system from then on. */
export function startTheme(): void {
  try {
    pref = parseThemePref(window.localStorage.getItem(THEME_KEY));
  } catch {
    pref = "system"; // storage refused (private mode): follow the system
  }
  apply();
  query?.addEventListener("change", apply);
}

export function toggleTheme(): void {
  pref = toggledPref(pref, systemLight());
  try {
    if (pref === "system") window.localStorage.removeItem(THEME_KEY);
    else window.localStorage.setItem(THEME_KEY, pref);
  } catch {
    // not remembered, still shown on this page
  }
  apply();
}

export function onThemeChange(listener: (theme: Theme) => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
