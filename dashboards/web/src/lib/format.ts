// Formatting of numbers and times for people. Pure: every "now" is passed in.

export function formatPercent(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  return `${value.toFixed(value >= 10 || value === 0 ? 0 : 1)}%`;
}

const RATE_UNITS = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];

/** Bytes per second with a decimal unit: 1500 → "1.5 kB/s". */
export function formatRate(bps: number | null | undefined): string {
  if (bps == null || !Number.isFinite(bps) || bps < 0) return "—";
  let value = bps;
  let unit = 0;
  while (value >= 1000 && unit < RATE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${RATE_UNITS[unit]}`;
}

/** How long ago `ts` (unix seconds) was: "3 s ago", "5 min ago", "2 h ago", "4 d ago". */
export function formatAgo(ts: number | null | undefined, nowS: number): string {
  if (ts == null || !Number.isFinite(ts) || ts <= 0) return "never";
  const age = Math.max(0, nowS - ts);
  if (age < 1) return "just now";
  if (age < 60) return `${Math.floor(age)} s ago`;
  if (age < 3600) return `${Math.floor(age / 60)} min ago`;
  if (age < 86400) return `${Math.floor(age / 3600)} h ago`;
  return `${Math.floor(age / 86400)} d ago`;
}

/** A duration in seconds: 0.25 → "250 ms", 75 → "1 min 15 s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds % 60);
  if (minutes < 60) return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `${hours} h ${minutes % 60} min`;
}

/** Local date and time of a unix-seconds timestamp, ISO-like and sortable. */
export function formatTime(ts: number | null | undefined): string {
  if (ts == null || !Number.isFinite(ts)) return "—";
  const d = new Date(ts * 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** Labels as `k=v` strings, sorted by key so the order is stable. */
export function formatLabels(labels: Record<string, string> | null | undefined): string[] {
  if (!labels) return [];
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
}
