import { useCallback, useEffect, useState } from "react";
import { useApp, useNow } from "../context";
import { del, errorText, get, post } from "../lib/api";
import { roleAllows } from "../lib/commands";
import { formatDuration, formatTime } from "../lib/format";
import { ruleCondition, ruleSummary, shortDuration, silenceRequest, sortRules, type Rule } from "../lib/rules";
import { silenceScope, silencesInForce } from "../lib/silences";
import { alertSeverityClass } from "../lib/states";
import type { Silence } from "../lib/types";

const INPUT = "rounded border border-slate-700 bg-slate-900 px-2 py-1.5 text-sm text-slate-100";
const PRESETS = ["30m", "1h", "4h", "1d", "7d"];

/** Alert rules with their thresholds, and silences of any duration by agent or rule. */
export function RulesPage() {
  const { me, fleet } = useApp();
  const [rules, setRules] = useState<Rule[] | null>(null);
  const [silences, setSilences] = useState<Silence[]>([]);
  const [form, setForm] = useState({ agent: "", rule: "", duration: "1h", reason: "" });
  const [note, setNote] = useState("");
  const now = useNow(5000);
  const canAct = roleAllows(me.role, "operator");

  const load = useCallback(() => {
    get<Rule[]>("/alerts/rules").then(setRules).catch((exc: unknown) => setNote(errorText(exc)));
    get<Silence[]>("/silences").then(setSilences).catch((exc: unknown) => setNote(errorText(exc)));
  }, []);
  useEffect(load, [load]);

  async function silence() {
    const request = silenceRequest(form);
    if (!request.ok) {
      setNote(request.error);
      return;
    }
    try {
      const made = await post<Silence>("/silences", request.body);
      setNote(`Silenced ${silenceScope(made)} for ${shortDuration(made.ends_at - made.starts_at)}.`);
      setForm({ ...form, reason: "" });
    } catch (exc) {
      setNote(errorText(exc));
    }
    load();
  }

  async function end(s: Silence) {
    try {
      await del(`/silences/${encodeURIComponent(s.id)}`);
      setNote(`Ended the silence of ${silenceScope(s)}.`);
    } catch (exc) {
      setNote(errorText(exc));
    }
    load();
  }

  const inForce = silencesInForce(silences, now);
  const agents = Object.keys(fleet.agents).sort();
  return (
    <div className="space-y-6">
      <h1 className="text-xl font-semibold text-slate-100">Alert rules and silences</h1>
      {rules === null ? (
        <p className="text-slate-400">Loading…</p>
      ) : (
        <ul className="grid gap-2 md:grid-cols-2" data-testid="rules-list">
          {sortRules(rules).map((r) => (
            <li key={r.name} className={`rounded border border-slate-800 p-3 text-sm ${r.enabled ? "" : "opacity-50"}`} data-testid={`rule-${r.name}`} data-enabled={r.enabled}>
              <div className="flex flex-wrap items-center gap-2">
                <span className="font-medium text-slate-100">{r.name}</span>
                <span className={`rounded px-2 py-0.5 text-xs font-semibold ${alertSeverityClass(r.severity)}`}>{r.severity}</span>
                <span className="rounded bg-slate-800 px-1.5 py-0.5 text-xs text-slate-300">{r.builtin ? "built-in" : "custom"}</span>
                {!r.enabled && <span className="text-xs text-slate-400">switched off</span>}
              </div>
              <p className="mt-1 text-slate-200" data-testid={`rule-condition-${r.name}`}>Fires when {ruleCondition(r)}</p>
              {r.summary && (
                <p className="text-xs italic text-slate-400" data-testid={`rule-summary-${r.name}`}>{ruleSummary(r)}</p>
              )}
              <p className="text-xs text-slate-500">
                resolves {r.clear_for_s <= 0 ? "as soon as it clears" : `after ${shortDuration(r.clear_for_s)} clear`}
                {Object.keys(r.labels).length ? ` · agents with ${Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(", ")}` : ""}
                {r.scope === "maestro" ? " · about the maestro itself" : ""}
              </p>
            </li>
          ))}
        </ul>
      )}
      <h2 className="text-lg font-semibold text-slate-100">Silences</h2>
      {canAct && (
        <form
          data-testid="silence-form"
          className="flex flex-wrap items-end gap-3 rounded border border-slate-800 p-4"
          onSubmit={(e) => {
            e.preventDefault();
            void silence();
          }}
        >
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Agent
            <select data-testid="silence-agent" value={form.agent} onChange={(e) => setForm({ ...form, agent: e.target.value })} className={INPUT}>
              <option value="">every agent</option>
              {agents.map((a) => <option key={a} value={a}>{a}</option>)}
            </select>
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Rule
            <select data-testid="silence-rule" value={form.rule} onChange={(e) => setForm({ ...form, rule: e.target.value })} className={INPUT}>
              <option value="">every rule</option>
              {(rules ?? []).filter((r) => r.enabled).map((r) => <option key={r.name} value={r.name}>{r.name}</option>)}
            </select>
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            For (e.g. 90m, 2h, 1d12h)
            <input data-testid="silence-duration" list="silence-presets" value={form.duration} onChange={(e) => setForm({ ...form, duration: e.target.value })} className={`${INPUT} w-32`} />
            <datalist id="silence-presets">{PRESETS.map((p) => <option key={p} value={p} />)}</datalist>
          </label>
          <label className="flex flex-col gap-1 text-xs text-slate-400">
            Reason
            <input data-testid="silence-reason" value={form.reason} onChange={(e) => setForm({ ...form, reason: e.target.value })} className={INPUT} />
          </label>
          <button type="submit" data-testid="silence-add" className="min-h-10 rounded bg-sky-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-sky-600">
            Silence
          </button>
        </form>
      )}
      {note && <p className="text-sm text-slate-300" data-testid="rules-note">{note}</p>}
      {inForce.length === 0 ? (
        <p className="text-sm text-slate-400" data-testid="rules-silences-empty">None in force: every alert notifies.</p>
      ) : (
        <ul className="divide-y divide-slate-800 rounded border border-slate-800" data-testid="rules-silences">
          {inForce.map((s) => (
            <li key={s.id} className="flex flex-wrap items-center gap-3 p-3 text-sm" data-testid={`rules-silence-${s.id}`}>
              <span className="text-slate-200">{silenceScope(s)}</span>
              <span className="text-slate-400" title={formatTime(s.ends_at)} data-testid="silence-ends-in">ends in {formatDuration(s.ends_at - now)}</span>
              <span className="text-slate-500">by {s.created_by}{s.reason ? ` · ${s.reason}` : ""}</span>
              {canAct && (
                <button type="button" onClick={() => void end(s)} className="ml-auto min-h-10 rounded bg-slate-700 px-3 py-1 text-xs text-slate-100 hover:bg-slate-600">
                  End
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
