import { describe, expect, it } from "vitest";
import {
  formatAgo, formatBytes, formatCelsius, formatDuration, formatLabels, formatOffset, formatPercent,
  formatRate, formatUptime,
} from "./format";

describe("formatAgo", () => {
  it("says seconds, minutes, hours and days ago", () => {
    expect(formatAgo(100, 103.4)).toBe("3 s ago");
    expect(formatAgo(100, 100 + 5 * 60 + 2)).toBe("5 min ago");
    expect(formatAgo(0.5, 7200)).toBe("1 h ago");
    expect(formatAgo(1000, 1000 + 4 * 86400)).toBe("4 d ago");
  });
  it("says never for an agent never seen, and just now for clock skew", () => {
    expect(formatAgo(null, 10)).toBe("never");
    expect(formatAgo(0, 10)).toBe("never");
    expect(formatAgo(20, 10)).toBe("just now");
  });
});

describe("formatPercent and formatRate", () => {
  it("shows whole percents above 10 and one decimal below", () => {
    expect(formatPercent(42.44)).toBe("42%");
    expect(formatPercent(3.14)).toBe("3.1%");
    expect(formatPercent(0)).toBe("0%");
    expect(formatPercent(null)).toBe("—");
    expect(formatPercent(Number.NaN)).toBe("—");
  });
  it("scales byte rates to decimal units", () => {
    expect(formatRate(999)).toBe("999 B/s");
    expect(formatRate(1500)).toBe("1.5 kB/s");
    expect(formatRate(250_000_000)).toBe("250 MB/s");
    expect(formatRate(undefined)).toBe("—");
    expect(formatRate(-1)).toBe("—");
  });
});

describe("formatDuration and formatLabels", () => {
  it("reads durations the way people say them", () => {
    expect(formatDuration(0.25)).toBe("250 ms");
    expect(formatDuration(2.5)).toBe("2.5 s");
    expect(formatDuration(75)).toBe("1 min 15 s");
    expect(formatDuration(3 * 3600 + 120)).toBe("3 h 2 min");
  });
  it("lists labels as k=v sorted by key", () => {
    expect(formatLabels({ zone: "b", role: "web" })).toEqual(["role=web", "zone=b"]);
    expect(formatLabels(null)).toEqual([]);
  });
});

describe("more units", () => {
  it("formats bytes, offsets and uptimes", () => {
    expect(formatBytes(4e9)).toBe("4.0 GB");
    expect(formatOffset(7260)).toBe("2 h ahead");
    expect(formatOffset(-45)).toBe("45 s behind");
    expect(formatUptime(42)).toBe("42 s");
    expect(formatCelsius(null)).toBe("—");
  });
});
