import { useState, type FormEvent } from "react";
import { errorText, post } from "../lib/api";
import type { Me } from "../lib/types";

/** Shown instead of the app while the API says the password must change (the first
 * admin's, printed by `arete up`): nothing else answers until it is changed. */
export function PasswordPage({ me, onChanged }: { me: Me; onChanged: (me: Me) => void }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (next !== again) {
      setError("the two new passwords differ");
      return;
    }
    setBusy(true);
    setError("");
    try {
      const updated = await post<Me>("/auth/password", {
        current_password: current,
        new_password: next,
      });
      onChanged(updated);
    } catch (exc) {
      setError(errorText(exc));
    } finally {
      setBusy(false);
    }
  }

  const input =
    "w-full rounded border border-slate-700 bg-slate-950 px-3 py-2 text-slate-100 outline-none focus:border-sky-500";
  return (
    <div className="flex min-h-full items-center justify-center">
      <form
        onSubmit={submit}
        data-testid="password-form"
        className="w-full max-w-sm rounded-lg border border-slate-800 bg-slate-900 p-8 shadow-xl"
      >
        <h1 className="mb-1 text-xl font-semibold text-slate-100">Choose your password</h1>
        <p className="mb-6 text-sm text-slate-400">
          {me.user}, the password you signed in with was made for you. Choose your own (8
          characters or more) to continue.
        </p>
        <label className="mb-4 block text-sm">
          <span className="mb-1 block text-slate-300">Current password</span>
          <input
            data-testid="password-current"
            type="password"
            autoComplete="current-password"
            value={current}
            onChange={(e) => setCurrent(e.target.value)}
            className={input}
            required
          />
        </label>
        <label className="mb-4 block text-sm">
          <span className="mb-1 block text-slate-300">New password</span>
          <input
            data-testid="password-new"
            type="password"
            autoComplete="new-password"
            minLength={8}
            value={next}
            onChange={(e) => setNext(e.target.value)}
            className={input}
            required
          />
        </label>
        <label className="mb-6 block text-sm">
          <span className="mb-1 block text-slate-300">New password again</span>
          <input
            data-testid="password-again"
            type="password"
            autoComplete="new-password"
            minLength={8}
            value={again}
            onChange={(e) => setAgain(e.target.value)}
            className={input}
            required
          />
        </label>
        {error && (
          <p role="alert" data-testid="password-error" className="mb-4 text-sm text-red-400">{error}</p>
        )}
        <button
          type="submit"
          disabled={busy}
          data-testid="password-submit"
          className="w-full rounded bg-sky-600 py-2 font-medium text-white hover:bg-sky-500 disabled:opacity-50"
        >
          {busy ? "Saving…" : "Save and continue"}
        </button>
      </form>
    </div>
  );
}
