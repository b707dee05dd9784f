import { useState, type FormEvent } from "react";
import { errorText, post } from "../lib/api";
import type { Me } from "../lib/types";

export function LoginPage({ onLogin }: { onLogin: (me: Me) => void }) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const me = await post<Me>("/auth/login", { username, password });
      setPassword("");
      if (!window.location.hash || window.location.hash === "#/login") window.location.hash = "#/";
      onLogin(me);
    } catch (exc) {
      setError(errorText(exc));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="flex min-h-full items-center justify-center">
      <form
        onSubmit={submit}
        data-testid="login-form"
        className="w-full max-w-sm rounded-lg border border-slate-800 bg-slate-900 p-8 shadow-xl"
      >
        <h1 className="mb-1 text-xl font-semibold text-slate-100">Areté Mission Control</h1>
        <p className="mb-6 text-sm text-slate-400">Sign in to watch and command the fleet.</p>
        <label className="mb-4 block text-sm">
          <span className="mb-1 block text-slate-300">User</span>
          <input
            data-testid="login-username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            className="w-full rounded border border-slate-700 bg-slate-950 px-3 py-2 text-slate-100 outline-none focus:border-sky-500"
            required
          />
        </label>
        <label className="mb-6 block text-sm">
          <span className="mb-1 block text-slate-300">Password</span>
          <input
            data-testid="login-password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            className="w-full rounded border border-slate-700 bg-slate-950 px-3 py-2 text-slate-100 outline-none focus:border-sky-500"
            required
          />
        </label>
        {error && (
          <p role="alert" data-testid="login-error" className="mb-4 text-sm text-red-400">{error}</p>
        )}
        <button
          type="submit"
          disabled={busy}
          data-testid="login-submit"
          className="w-full rounded bg-sky-600 py-2 font-medium text-white hover:bg-sky-500 disabled:opacity-50"
        >
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </div>
  );
}
