// Users and API tokens (admin page). Pure helpers.

export interface User {
  name: string;
  role: "viewer" | "operator" | "admin";
  created_at: number;
  has_password: boolean;
  tokens: number;
}

export interface Token {
  id: string;
  label: string;
  created_at: number;
  last_used_at: number | null;
}

export const ROLES = ["viewer", "operator", "admin"] as const;

export type UserRequest =
  | { ok: true; body: { name: string; role: string; password?: string } }
  | { ok: false; error: string };

/** The POST /users body, or what is wrong (a sentence). Names as the API accepts them. */
export function userRequest(form: { name: string; role: string; password: string }, existing: User[]): UserRequest {
  const name = form.name.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) {
    return { ok: false, error: "A user name is 1-64 letters, digits, or . _ @ - (starting with a letter or digit)." };
  }
  if (existing.some((u) => u.name === name)) return { ok: false, error: `There is already a user ${name}.` };
  if (!(ROLES as readonly string[]).includes(form.role)) return { ok: false, error: "Choose a role." };
  const body: { name: string; role: string; password?: string } = { name, role: form.role };
  if (form.password) {
    if (form.password.length < 8) return { ok: false, error: "A password has at least 8 characters." };
    body.password = form.password;
  }
  return { ok: true, body };
}

/** Admins count: the last one cannot be removed or demoted (the API answers 409 too). */
export function isLastAdmin(user: User, users: User[]): boolean {
  return user.role === "admin" && users.filter((u) => u.role === "admin").length <= 1;
}
