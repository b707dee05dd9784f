import { useEffect, useRef } from "react";
import uPlot from "uplot";
import type { PlotData } from "../lib/chart";

export interface ChartSeries {
  label: string;
  color: string;
  format?: (v: number | null) => string;
}

/** A uPlot line chart sized to its container; data updates do not rebuild it. */
export function Chart({
  data, series, yRange, height = 180, testId,
}: {
  data: PlotData;
  series: ChartSeries[];
  yRange?: [number, number];
  height?: number;
  testId?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const key = series.map((s) => s.label).join("|") + (yRange ? yRange.join(",") : "auto");

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: yRange ? { range: yRange } : { auto: true } },
      axes: [
        { stroke: "#94a3b8", grid: { stroke: "#1e293b" }, ticks: { stroke: "#334155" } },
        {
          stroke: "#94a3b8",
          grid: { stroke: "#1e293b" },
          ticks: { stroke: "#334155" },
          size: 70,
          values: (_u, vals) => vals.map((v) => (series[0]?.format ? series[0].format(v) : String(v))),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (s.format ? s.format(v) : v == null ? "—" : v.toFixed(1)),
        })),
      ],
    };
    const u = new uPlot(opts, data as uPlot.AlignedData, el);
    plot.current = u;
    const resize = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    resize.observe(el);
    return () => {
      resize.disconnect();
      u.destroy();
      plot.current = null;
    };
    // Rebuilt only when the series change; data goes through setData below.
  }, [key, height]);

  useEffect(() => {
    plot.current?.setData(data as uPlot.AlignedData);
  }, [data]);

  return <div ref={box} className="w-full" data-testid={testId} data-points={data[0].length} />;
}
