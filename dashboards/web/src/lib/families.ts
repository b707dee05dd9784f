// Which charts the agent page draws: one per metric family the agent sends, each with its
// series and unit. Pure: the keys come from live frames or a history answer.

import {
  formatCelsius, formatCount, formatIops, formatLoad, formatPercent, formatRate, formatUptime,
  formatWatts,
} from "./format";

export type Unit = "percent" | "rate" | "iops" | "celsius" | "count" | "load" | "uptime" | "watts";

export interface Family {
  id: string; // chart-live-<id>, chart-history-<id>
  title: string;
  unit: Unit;
  fields: string[];
  labels: string[];
}

export const FORMATS: Record<Unit, (v: number | null | undefined) => string> = {
  percent: formatPercent,
  rate: formatRate,
  iops: formatIops,
  celsius: formatCelsius,
  count: formatCount,
  load: formatLoad,
  uptime: formatUptime,
  watts: formatWatts,
};

export const PALETTE = [
  "#38bdf8", "#a78bfa", "#fbbf24", "#34d399", "#f472b6", "#fb923c", "#60a5fa", "#e879f9",
  "#a3e635", "#f87171", "#2dd4bf", "#facc15",
];

/**
 * What the charts ask the history API for: everything it stores for the agent (the stored
 * columns plus every per-core, per-mount, per-sensor and per-GPU key found in the window).
 */
export const HISTORY_FIELDS = ["*"] as const;

/** The columns stored per sample (a summary of each family: fullest mount, hottest sensor). */
export const STORED_FIELDS = [
  "cpu", "mem", "swap", "disk", "load1", "net_rx_bps", "net_tx_bps", "disk_read_bps",
  "disk_write_bps", "procs", "gpu_util", "temp_max",
] as const;

const num = (a: string, b: string) => a.localeCompare(b, undefined, { numeric: true });

function pick(keys: ReadonlySet<string>, fixed: [string, string][]): [string[], string[]] {
  const present = fixed.filter(([f]) => keys.has(f));
  return [present.map(([f]) => f), present.map(([, l]) => l)];
}

function prefixed(keys: ReadonlySet<string>, test: (k: string) => boolean, label: (k: string) => string): [string[], string[]] {
  const fields = [...keys].filter(test).sort(num);
  return [fields, fields.map(label)];
}

function join(a: [string[], string[]], b: [string[], string[]]): [string[], string[]] {
  return [[...a[0], ...b[0]], [...a[1], ...b[1]]];
}

/**
 * The families among `keys` (field names), in page order; a family none of whose fields is
 * present is left out (no GPU chart on a machine without one). The stored summary of a
 * family (fullest mount, hottest sensor, busiest GPU) comes first, so a chart seeded from
 * history has a line from the start.
 */
export function familiesOf(keys: Iterable<string>): Family[] {
  const k = new Set(keys);
  const out: Family[] = [];
  const add = (id: string, title: string, unit: Unit, [fields, labels]: [string[], string[]]) => {
    if (fields.length) out.push({ id, title, unit, fields, labels });
  };
  const cores = prefixed(k, (f) => /^cpu\.\d+$/.test(f), (f) => `core ${f.slice(4)}`);
  const cpu = pick(k, [["cpu", "all"]]);
  add("cpu", cores[0].length ? "CPU per core" : "CPU", "percent", [[...cpu[0], ...cores[0]], [...cpu[1], ...cores[1]]]);
  add("memory", "Memory and swap", "percent", pick(k, [["mem", "memory"], ["swap", "swap"]]));
  const mounts = prefixed(k, (f) => f.startsWith("mount:"), (f) => f.slice(6));
  add("disk", mounts[0].length ? "Disk use per mount" : "Disk use", "percent", join(pick(k, [["disk", "fullest mount"]]), mounts));
  add("diskio", "Disk I/O", "rate", pick(k, [["disk_read_bps", "read"], ["disk_write_bps", "write"]]));
  add("diskops", "Disk operations", "iops", pick(k, [["disk_read_iops", "reads"], ["disk_write_iops", "writes"]]));
  add("net", "Network", "rate", pick(k, [["net_rx_bps", "in"], ["net_tx_bps", "out"]]));
  add("load", "Load average", "load", pick(k, [["load1", "1 min"], ["load5", "5 min"], ["load15", "15 min"]]));
  const sensors = prefixed(k, (f) => f.startsWith("temp:") || /^gpu\.\d+\.temp$/.test(f),
    (f) => (f.startsWith("temp:") ? f.slice(5) : `GPU ${f.split(".")[1]}`));
  add("temps", "Temperatures", "celsius", join(pick(k, [["temp_max", "hottest sensor"]]), sensors));
  const gpus = prefixed(k, (f) => /^gpu\.\d+\.(util|mem)$/.test(f),
    (f) => `GPU ${f.split(".")[1]} ${f.endsWith("util") ? "busy" : "memory"}`);
  add("gpu", "GPU", "percent", join(pick(k, [["gpu_util", "busiest GPU"]]), gpus));
  add("gpupower", "GPU power", "watts",
    prefixed(k, (f) => /^gpu\.\d+\.power$/.test(f), (f) => `GPU ${f.split(".")[1]}`));
  add("procs", "Processes", "count", pick(k, [["procs", "processes"]]));
  add("uptime", "Uptime", "uptime", pick(k, [["uptime_s", "uptime"]]));
  return out;
}

/** The fields of a history answer that carry at least one value (a GPU-less box sends none). */
export function fieldsWithData(series: Record<string, { avg: (number | null)[] }>): string[] {
  return Object.entries(series).filter(([, s]) => s.avg.some((v) => v != null)).map(([f]) => f);
}
