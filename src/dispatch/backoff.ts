/**
 * Exponential backoff for sends: the first retry after `initialMs`, doubling per failed attempt,
 * never longer than `maxMs`. `failedAttempts` counts failures so far, including the one just seen.
 */
export function backoffMs(failedAttempts: number, initialMs: number, maxMs: number): number {
  const n = Math.max(1, failedAttempts);
  // cap the exponent: 2^60 ms is already far beyond any sensible maximum
  return Math.min(maxMs, initialMs * 2 ** Math.min(n - 1, 60));
}
