// The web API over fetch. The session cookie (HttpOnly) rides along on same-origin calls.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
  ) {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "ApiError";
  }
}

/** The `{error, detail}` body of a failed response → a readable error. */
export function errorFromBody(status: number, body: unknown): ApiError {
  if (typeof body === "object" && body !== null) {
    const b = body as { error?: unknown; detail?: unknown };
    const code = typeof b.error === "string" ? b.error : `http_${status}`;
    const detail =
      typeof b.detail === "string" ? b.detail : b.detail !== undefined ? JSON.stringify(b.detail) : "";
    return new ApiError(status, code, detail);
  }
  return new ApiError(status, `http_${status}`, typeof body === "string" ? body.slice(0, 300) : "");
}

let onUnauthorized: () => void = () => {};

/** Called when any request answers 401: the session ended, show the login page. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  let body: string | undefined;
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(init.body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method: init.method ?? "GET", headers, body, credentials: "same-origin" });
  } catch (exc) {
    throw new ApiError(0, "network", exc instanceof Error ? exc.message : String(exc));
  }
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text for the error message
  }
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/auth/login")) onUnauthorized();
    throw errorFromBody(response.status, parsed);
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>(path);
export const post = <T>(path: string, body: unknown = {}) => api<T>(path, { method: "POST", body });
export const del = <T>(path: string) => api<T>(path, { method: "DELETE" });

export function errorText(exc: unknown): string {
  if (exc instanceof ApiError) return exc.message;
  return exc instanceof Error ? exc.message : String(exc);
}
