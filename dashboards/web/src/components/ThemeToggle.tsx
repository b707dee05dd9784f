import { useEffect, useState } from "react";
import { currentTheme, onThemeChange, toggleTheme } from "../theme";

/** Flips between light and dark; back on the system's theme, it follows the system again. */
export function ThemeToggle() {
  const [theme, setTheme] = useState(currentTheme);
  useEffect(() => onThemeChange(setTheme), []);
  const other = theme === "light" ? "dark" : "light";
  return (
    <button
      type="button"
      onClick={toggleTheme}
      data-testid="theme-toggle"
      data-theme={theme}
      title={`Switch to the ${other} theme`}
      aria-label={`Switch to the ${other} theme`}
      className="rounded border border-slate-700 px-2.5 py-1 text-slate-300 hover:bg-slate-800"
    >
      <span aria-hidden="true">{theme === "light" ? "☾" : "☀"}</span>
    </button>
  );
}
