import { describe, expect, it } from "vitest";
import { familiesOf, fieldsWithData, FORMATS, HISTORY_FIELDS } from "./families";

const FULL_SAMPLE = [
  "cpu", "cpu.0", "cpu.1", "cpu.10", "cpu.2", "mem", "swap", "disk", "mount:/", "mount:/data",
  "disk_read_bps", "disk_write_bps", "disk_read_iops", "disk_write_iops", "net_rx_bps",
  "net_tx_bps", "load1", "load5", "load15", "temp:cpu", "gpu.0.util", "gpu.0.mem", "gpu.0.temp",
  "procs", "uptime_s", "rx_ts", "mem_total",
];

describe("metric families", () => {
  it("gives one chart per family the agent sends, in page order", () => {
    expect(familiesOf(FULL_SAMPLE).map((f) => f.id)).toEqual([
      "cpu", "memory", "disk", "diskio", "diskops", "net", "load", "temps", "gpu", "procs", "uptime",
    ]);
  });
  it("lists cores in numeric order after the total", () => {
    const cpu = familiesOf(FULL_SAMPLE)[0]!;
    expect(cpu.fields).toEqual(["cpu", "cpu.0", "cpu.1", "cpu.2", "cpu.10"]);
    expect(cpu.labels).toEqual(["all", "core 0", "core 1", "core 2", "core 10"]);
  });
  it("charts each mount and sensor by its name, GPU temperatures beside the others", () => {
    const fams = Object.fromEntries(familiesOf(FULL_SAMPLE).map((f) => [f.id, f]));
    expect(fams.disk!.labels).toEqual(["fullest mount", "/", "/data"]);
    expect(fams.temps!.labels).toEqual(["GPU 0", "cpu"]);
    expect(fams.gpu!.labels).toEqual(["GPU 0 memory", "GPU 0 busy"]);
  });
  it("has no GPU or temperature chart on a machine without them", () => {
    const ids = familiesOf(["cpu", "mem", "disk", "net_rx_bps"]).map((f) => f.id);
    expect(ids).toEqual(["cpu", "memory", "disk", "net"]);
  });
  it("shows the stored summaries (all history has) first", () => {
    const fams = familiesOf(["disk", "temp_max", "gpu_util"]);
    expect(fams.map((f) => [f.id, f.labels])).toEqual([
      ["disk", ["fullest mount"]], ["temps", ["hottest sensor"]], ["gpu", ["busiest GPU"]],
    ]);
  });
  it("charts GPU power when the agent reports it, in watts", () => {
    const power = familiesOf(["cpu", "gpu.0.power", "gpu.1.power"]).find((f) => f.id === "gpupower");
    expect(power?.labels).toEqual(["GPU 0", "GPU 1"]);
    expect(power?.unit).toBe("watts");
    expect(FORMATS.watts(150.4)).toBe("150 W");
  });
  it("asks history for every stored key, so each family's chart is seeded", () => {
    expect(HISTORY_FIELDS).toEqual(["*"]);
  });
  it("keeps only history fields with a value", () => {
    expect(fieldsWithData({ cpu: { avg: [null, 3] }, gpu_util: { avg: [null, null] } })).toEqual(["cpu"]);
  });
  it("formats every unit", () => {
    expect(FORMATS.rate(20e6)).toBe("20.0 MB/s");
    expect(FORMATS.celsius(54.5)).toBe("54.5 °C");
    expect(FORMATS.uptime(93_784)).toBe("1 d 2 h");
    expect(FORMATS.load(0.5)).toBe("0.50");
    expect(FORMATS.iops(12.34)).toBe("12.3 IO/s");
    expect(FORMATS.count(123)).toBe("123");
  });
});
