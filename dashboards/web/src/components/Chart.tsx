import { useEffect, useRef } from "react";
import uPlot from "uplot";
import { axisWidth, niceMax, timeLabel, timeTicks, type PlotData } from "../lib/chart";

export interface ChartSeries {
  label: string;
  color: string;
  format?: (v: number | null) => string;
}

const AXIS = "#94a3b8";
const GRID = "rgba(148, 163, 184, 0.15)";

/**
 * A uPlot line chart sized to its container; data updates do not rebuild it.
 * `xRange` pins the time axis (a whole "15 min" even with 3 points of data); `onZoom`
 * turns on drag-to-zoom and gets the dragged window; `yRange` pins the y axis, else it
 * runs from 0 to a round value above the data.
 */
export function Chart({
  data, series, format, yRange, xRange, onZoom, height = 180, testId,
}: {
  data: PlotData;
  series: ChartSeries[];
  format?: (v: number | null) => string;
  yRange?: [number, number];
  xRange?: [number, number];
  onZoom?: (from: number, to: number) => void;
  height?: number;
  testId?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const xr = useRef(xRange);
  xr.current = xRange;
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  const fmt = format ?? series[0]?.format ?? ((v: number | null) => (v == null ? "—" : String(v)));
  const key = series.map((s) => s.label).join("|") + (yRange ? yRange.join(",") : "auto") + String(Boolean(onZoom));

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: true },
      cursor: { drag: { x: Boolean(zoom.current), y: false, setScale: false } },
      scales: {
        x: { time: true, range: (_u, min, max) => (xr.current ? [xr.current[0], xr.current[1]] : [min, max]) },
        y: yRange ? { range: yRange } : { range: (_u, _min, max) => [0, niceMax(max)] },
      },
      axes: [
        {
          stroke: AXIS,
          grid: { stroke: GRID },
          ticks: { stroke: GRID },
          splits: (u, _i, min, max) => timeTicks(min, max, u.bbox.width / (window.devicePixelRatio || 1)).splits,
          values: (u, splits) => {
            const span = (u.scales.x!.max ?? 0) - (u.scales.x!.min ?? 0);
            const incr = splits.length > 1 ? splits[1]! - splits[0]! : Math.max(span, 1);
            return splits.map((s) => timeLabel(s, incr, span));
          },
        },
        {
          stroke: AXIS,
          grid: { stroke: GRID },
          ticks: { stroke: GRID },
          size: (_u, values) => axisWidth(values ?? []),
          values: (_u, vals) => vals.map((v) => fmt(v)),
        },
      ],
      series: [
        { value: (_u: uPlot, v: number | null) => (v == null ? "—" : new Date(v * 1000).toLocaleString()) },
        ...series.map((s) => ({
          label: s.label,
          stroke: s.color,
          width: 1.5,
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (s.format ?? fmt)(v),
        })),
      ],
      hooks: {
        setSelect: [
          (u: uPlot) => {
            const { left, width } = u.select;
            if (width > 4 && zoom.current) {
              zoom.current(u.posToVal(left, "x"), u.posToVal(left + width, "x"));
            }
            if (width > 0) u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          },
        ],
      },
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
    // Rebuilt only when the series change; data and the x window go through the effect below.
  }, [key, height]);

  const x0 = xRange?.[0];
  const x1 = xRange?.[1];
  useEffect(() => {
    const u = plot.current;
    if (!u) return;
    u.setData(data as uPlot.AlignedData);
    if (x0 !== undefined && x1 !== undefined) u.setScale("x", { min: x0, max: x1 });
  }, [data, x0, x1]);

  return (
    <div
      ref={box}
      className="w-full min-w-0"
      data-testid={testId}
      data-points={data[0].length}
      data-series={series.length}
      data-counts={data.slice(1).map((col) => (col as (number | null)[]).filter((v) => v != null).length).join(",")}
      data-xmin={x0}
      data-xmax={x1}
    />
  );
}
