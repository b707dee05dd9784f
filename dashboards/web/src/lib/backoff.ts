// Reconnect delays: exponential with full jitter, capped. Pure (the random source is passed).

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 15_000, factor: 2 };

/** The ceiling of the `attempt`-th delay (attempt 0 = first retry). */
export function backoffCeiling(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(0, Math.floor(attempt));
  return Math.min(policy.maxMs, policy.initialMs * policy.factor ** Math.min(n, 30));
}

/**
 * The delay before retry `attempt`: between half the ceiling and the ceiling, so many
 * dashboards losing one server do not all come back in the same millisecond.
 */
export function backoffDelay(
  attempt: number,
  random: () => number = Math.random,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const ceiling = backoffCeiling(attempt, policy);
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(ceiling / 2 + (ceiling / 2) * r);
}
