import { useCallback, useEffect, useState } from "react";
import { ConfirmDialog, type ConfirmRequest } from "../components/ConfirmDialog";
import { useApp, useNow } from "../context";
import { api, del, errorText, get, post } from "../lib/api";
import { roleAllows } from "../lib/commands";
import { formatAgo, formatTime } from "../lib/format";
import { isLastAdmin, ROLES, userRequest, type Token, type User } from "../lib/users";

const INPUT = "rounded border border-slate-700 bg-slate-900 px-2 py-1.5 text-sm text-slate-100";
const BUTTON = "min-h-10 rounded bg-slate-700 px-3 py-1 text-xs text-slate-100 hover:bg-slate-600 disabled:opacity-40";

/** Users and their API tokens (admins only). A new token is shown once. */
export function UsersPage() {
  const { me } = useApp();
  const [users, setUsers] = useState<User[] | null>(null);
  const [form, setForm] = useState({ name: "", role: "viewer", password: "" });
  const [selected, setSelected] = useState<string | null>(null);
  const [tokens, setTokens] = useState<Token[]>([]);
  const [label, setLabel] = useState("");
  const [secret, setSecret] = useState<{ user: string; token: string } | null>(null);
  const [note, setNote] = useState("");
  const [confirm, setConfirm] = useState<ConfirmRequest | null>(null);
  const now = useNow(10_000);

  const load = useCallback(() => {
    get<User[]>("/users").then(setUsers).catch((exc: unknown) => setNote(errorText(exc)));
  }, []);
  const loadTokens = useCallback((name: string) => {
    get<Token[]>(`/users/${encodeURIComponent(name)}/tokens`).then(setTokens).catch((exc: unknown) => setNote(errorText(exc)));
  }, []);

  useEffect(() => {
    if (roleAllows(me.role, "admin")) load();
  }, [me.role, load]);
  useEffect(() => {
    if (selected) loadTokens(selected);
  }, [selected, loadTokens]);

  if (!roleAllows(me.role, "admin")) {
    return <p className="text-slate-400" data-testid="users-admin-only">Only admins manage users and tokens.</p>;
  }

  async function run(what: () => Promise<unknown>, done: string) {
    try {
      await what();
      setNote(done);
    } catch (exc) {
      setNote(errorText(exc));
    }
    load();
    if (selected) loadTokens(selected);
  }

  async function addUser() {
    const request = userRequest(form, users ?? []);
    if (!request.ok) {
      setNote(request.error);
      return;
    }
    await run(async () => {
      const made = await post<{ user: User; token: string }>("/users", request.body);
      setSecret({ user: made.user.name, token: made.token });
      setForm({ name: "", role: "viewer", password: "" });
      setSelected(made.user.name);
    }, `Added ${request.body.name} (${request.body.role}).`);
  }

  async function addToken(name: string) {
    await run(async () => {
      const made = await post<Token & { token: string }>(`/users/${encodeURIComponent(name)}/tokens`, { label: label.trim() });
      setSecret({ user: name, token: made.token });
      setLabel("");
    }, `New token for ${name}.`);
  }

  const list = users ?? [];
  return (
    <div className="space-y-6">
      <h1 className="text-xl font-semibold text-slate-100">Users and API tokens</h1>
      <form
        data-testid="user-form"
        className="flex flex-wrap items-end gap-3 rounded border border-slate-800 p-4"
        onSubmit={(e) => {
          e.preventDefault();
          void addUser();
        }}
      >
        <label className="flex flex-col gap-1 text-xs text-slate-400">
          Name
          <input data-testid="user-name" value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} className={INPUT} />
        </label>
        <label className="flex flex-col gap-1 text-xs text-slate-400">
          Role
          <select data-testid="user-role" value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })} className={INPUT}>
            {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
          </select>
        </label>
        <label className="flex flex-col gap-1 text-xs text-slate-400">
          Password (optional: without one, API tokens only)
          <input data-testid="user-password" type="password" autoComplete="new-password" value={form.password} onChange={(e) => setForm({ ...form, password: e.target.value })} className={INPUT} />
        </label>
        <button type="submit" data-testid="user-add" className="min-h-10 rounded bg-sky-700 px-4 py-1.5 text-sm font-medium text-white hover:bg-sky-600">
          Add user
        </button>
      </form>
      {note && <p className="text-sm text-slate-300" data-testid="users-note">{note}</p>}
      {secret && (
        <div className="rounded border border-amber-600 bg-amber-950/40 p-3 text-sm" data-testid="token-secret">
          <p className="text-amber-200">API token for {secret.user}, shown this once (only its hash is kept):</p>
          <code className="mt-1 block break-all font-mono text-amber-100" data-testid="token-secret-value">{secret.token}</code>
          <button type="button" className={`${BUTTON} mt-2`} onClick={() => setSecret(null)}>I saved it</button>
        </div>
      )}
      <ul className="divide-y divide-slate-800 rounded border border-slate-800" data-testid="users-list">
        {list.map((u) => (
          <li key={u.name} className="flex flex-wrap items-center gap-3 p-3 text-sm" data-testid={`user-${u.name}`}>
            <button type="button" onClick={() => setSelected(selected === u.name ? null : u.name)} className="min-h-10 font-medium text-sky-400 hover:underline" data-testid={`user-open-${u.name}`}>
              {u.name}
            </button>
            <select
              aria-label={`Role of ${u.name}`}
              data-testid={`user-role-${u.name}`}
              value={u.role}
              disabled={isLastAdmin(u, list)}
              title={isLastAdmin(u, list) ? "The last admin keeps the admin role" : undefined}
              onChange={(e) => void run(() => api(`/users/${encodeURIComponent(u.name)}`, { method: "PATCH", body: { role: e.target.value } }), `${u.name} is now ${e.target.value}.`)}
              className={INPUT}
            >
              {ROLES.map((r) => <option key={r} value={r}>{r}</option>)}
            </select>
            <span className="text-slate-400">{u.tokens} token{u.tokens === 1 ? "" : "s"}{u.has_password ? " · can sign in" : " · tokens only"}</span>
            <span className="text-xs text-slate-500" title={formatTime(u.created_at)}>added {formatAgo(u.created_at, now)}</span>
            <button
              type="button"
              data-testid={`user-remove-${u.name}`}
              disabled={isLastAdmin(u, list) || u.name === me.user}
              onClick={() =>
                setConfirm({
                  title: `Remove ${u.name}?`,
                  body: "Their tokens stop working and their sessions end at once.",
                  confirmLabel: "Remove",
                  danger: true,
                  onConfirm: () => void run(() => del(`/users/${encodeURIComponent(u.name)}`), `Removed ${u.name}.`),
                })
              }
              className={`${BUTTON} ml-auto`}
            >
              Remove
            </button>
            {selected === u.name && (
              <div className="w-full space-y-2 rounded bg-slate-900 p-3" data-testid={`tokens-${u.name}`}>
                {tokens.length === 0 ? (
                  <p className="text-slate-400">No API tokens.</p>
                ) : (
                  <ul className="space-y-1">
                    {tokens.map((t) => (
                      <li key={t.id} className="flex flex-wrap items-center gap-3" data-testid={`token-${t.id}`}>
                        <code className="font-mono text-slate-300">arete_{t.id}_…</code>
                        <span className="text-slate-300">{t.label || "no label"}</span>
                        <span className="text-xs text-slate-500">made {formatAgo(t.created_at, now)} · used {formatAgo(t.last_used_at, now)}</span>
                        <button
                          type="button"
                          data-testid={`token-revoke-${t.id}`}
                          onClick={() => void run(() => del(`/users/${encodeURIComponent(u.name)}/tokens/${t.id}`), `Revoked token ${t.id} of ${u.name}.`)}
                          className={`${BUTTON} ml-auto`}
                        >
                          Revoke
                        </button>
                      </li>
                    ))}
                  </ul>
                )}
                <form
                  className="flex flex-wrap items-end gap-2"
                  onSubmit={(e) => {
                    e.preventDefault();
                    void addToken(u.name);
                  }}
                >
                  <label className="flex flex-col gap-1 text-xs text-slate-400">
                    Label
                    <input data-testid="token-label" value={label} onChange={(e) => setLabel(e.target.value)} placeholder="what it is for" className={INPUT} />
                  </label>
                  <button type="submit" data-testid="token-add" className={BUTTON}>New token</button>
                </form>
              </div>
            )}
          </li>
        ))}
      </ul>
      <ConfirmDialog request={confirm} onClose={() => setConfirm(null)} />
    </div>
  );
}
