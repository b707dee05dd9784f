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

/** Degrees Celsius: 54.5 → "54.5 °C". */
export function formatCelsius(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  return `${value.toFixed(Math.abs(value) >= 100 ? 0 : 1)} °C`;
}

/** Power in watts: 150.5 → "151 W", 12.34 → "12.3 W". */
export function formatWatts(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value) || value < 0) return "—";
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} W`;
}

/** A count of things (processes): 1234.6 → "1235". */
export function formatCount(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  return Math.abs(value) >= 10_000 ? `${(value / 1000).toFixed(0)}k` : String(Math.round(value));
}

/** Operations per second: 12.34 → "12.3 IO/s". */
export function formatIops(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value) || value < 0) return "—";
  return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} IO/s`;
}

/** A load average: 0.5 → "0.50". */
export function formatLoad(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value)) return "—";
  return value >= 100 ? value.toFixed(0) : value.toFixed(2);
}

const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB", "PB"];

/** Bytes with a decimal unit: 4e9 → "4.0 GB". */
export function formatBytes(value: number | null | undefined): string {
  if (value == null || !Number.isFinite(value) || value < 0) return "—";
  let v = value;
  let unit = 0;
  while (v >= 1000 && unit < BYTE_UNITS.length - 1) {
    v /= 1000;
    unit += 1;
  }
  return `${v.toFixed(unit === 0 || v >= 100 ? 0 : 1)} ${BYTE_UNITS[unit]}`;
}

/** An uptime: 93_784 → "1 d 2 h", 3700 → "1 h 1 min", 42 → "42 s". */
export function formatUptime(seconds: number | null | undefined): string {
  if (seconds == null || !Number.isFinite(seconds) || seconds < 0) return "—";
  const d = Math.floor(seconds / 86_400);
  const h = Math.floor((seconds % 86_400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min`;
  return `${Math.floor(seconds)} s`;
}

/** A clock offset for people: 7260 → "2 h ahead", -45 → "45 s behind". */
export function formatOffset(seconds: number): string {
  const a = Math.abs(seconds);
  const size = a >= 86_400 ? `${Math.round(a / 86_400)} d` : a >= 3600 ? `${Math.round(a / 3600)} h`
    : a >= 60 ? `${Math.round(a / 60)} min` : `${Math.round(a)} s`;
  return `${size} ${seconds > 0 ? "ahead" : "behind"}`;
}
