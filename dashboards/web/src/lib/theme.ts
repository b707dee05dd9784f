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
