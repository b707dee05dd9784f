import { describe, expect, it } from "vitest";
import { formatAgo } from "./format";
import { notifierSentence, parseDuration, ruleSummary, shortDuration, ruleCondition, silenceRequest, sortRules, type Notifier, type Rule } from "./rules";

function rule(over: Partial<Rule> = {}): Rule {
  return {
    name: "cpu_high", kind: "metric", builtin: true, enabled: true, severity: "warning", for_s: 300, clear_for_s: 60,
    field: "cpu", op: ">", threshold: 90, labels: {}, states: [], scope: "agent", summary: "", ...over,
  };
}

describe("rules", () => {
  it("says when each kind of rule fires, with its threshold", () => {
    expect(ruleCondition(rule())).toBe("cpu > 90 % for 5 min");
    expect(ruleCondition(rule({ field: "load5", threshold: 4, for_s: 0 }))).toBe("load5 > 4");
    expect(ruleCondition(rule({ kind: "state", field: null, states: ["offline"], for_s: 0 }))).toBe("agent offline");
    expect(ruleCondition(rule({ kind: "condition", field: null, threshold: 10, for_s: 60 }))).toBe(
      "reported by the maestro (threshold 10) for 1 min",
    );
  });

  it("shows the alert's summary with its threshold filled in", () => {
    expect(ruleSummary(rule({ summary: "{agent}: CPU at {value}% (over {threshold}%)", threshold: 80 }))).toBe(
      "<agent>: CPU at <value>% (over 80%)",
    );
    expect(ruleSummary(rule({ summary: "" }))).toBe("");
    expect(ruleSummary(rule({ summary: "{unknown} stays" }))).toBe("{unknown} stays");
  });

  it("lists enabled built-ins first, then custom, then those switched off", () => {
    const order = sortRules([
      rule({ name: "disk_high", enabled: false }), rule({ name: "z_custom", builtin: false }), rule({ name: "mem_high" }),
    ]).map((r) => r.name);
    expect(order).toEqual(["mem_high", "z_custom", "disk_high"]);
  });
});

describe("silence durations", () => {
  it("reads any duration", () => {
    expect(parseDuration("90m")).toBe(5400);
    expect(parseDuration("2h")).toBe(7200);
    expect(parseDuration("1h30m")).toBe(5400);
    expect(parseDuration("1d 12h")).toBe(129600);
    expect(parseDuration("45s")).toBe(45);
    expect(parseDuration("20")).toBe(1200);
    expect(parseDuration("10 min")).toBe(600);
  });

  it("refuses nonsense and more than 30 days", () => {
    expect(parseDuration("")).toBeNull();
    expect(parseDuration("soon")).toBeNull();
    expect(parseDuration("2h banana")).toBeNull();
    expect(parseDuration("31d")).toBeNull();
    expect(parseDuration("0s")).toBeNull();
  });

  it("builds the silence by agent, rule or both", () => {
    expect(silenceRequest({ agent: "a1", rule: "", duration: "3h", reason: " upgrade " })).toEqual({
      ok: true, body: { agent: "a1", duration_s: 10800, reason: "upgrade" },
    });
    expect(silenceRequest({ agent: "", rule: "cpu_high", duration: "1d", reason: "" })).toEqual({
      ok: true, body: { rule: "cpu_high", duration_s: 86400, reason: "" },
    });
    expect(silenceRequest({ agent: "", rule: "", duration: "1h", reason: "" })).toEqual({ ok: false, error: "Choose an agent, a rule or both." });
    expect(silenceRequest({ agent: "a1", rule: "", duration: "forever", reason: "" }).ok).toBe(false);
  });
});

describe("short durations", () => {
  it("names a silence's length without zero parts", () => {
    expect(shortDuration(3600)).toBe("1 h");
    expect(shortDuration(5400)).toBe("1 h 30 min");
    expect(shortDuration(129600)).toBe("1 d 12 h");
    expect(shortDuration(45)).toBe("45 s");
    expect(shortDuration(0)).toBe("0 s");
  });
});

describe("notifier health", () => {
  const base: Notifier = {
    channel: "discord", kind: "discord", status: "ok", queued: 0, oldest_queued_at: null, last_sent_at: null,
    last_failed_at: null, last_error: null, sent: 0, failed: 0, retried: 0,
  };

  it("says how each channel is doing", () => {
    expect(notifierSentence(base, 1000, formatAgo)).toBe("Ready: nothing sent yet.");
    expect(notifierSentence({ ...base, last_sent_at: 880 }, 1000, formatAgo)).toBe("Working: last delivery 2 min ago.");
    expect(notifierSentence({ ...base, status: "failing", last_failed_at: 990 }, 1000, formatAgo)).toBe(
      "Failing: the last notification failed 10 s ago.",
    );
    expect(notifierSentence({ ...base, status: "retrying", queued: 3, oldest_queued_at: 940 }, 1000, formatAgo)).toBe(
      "Retrying: 3 waiting, the oldest queued 1 min ago.",
    );
  });
});
