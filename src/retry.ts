/** Retrying with exponential backoff and jitter, on an injected clock. */
import type { Clock } from "./clock.ts";
import { LifeboatError } from "./errors.ts";

/** How to retry: attempts in all, the first delay, and a hook to log each retry. */
export interface RetryOptions {
  attempts: number;
  baseMs: number;
  maxMs?: number;
  clock: Clock;
  /** Return false for errors that retrying cannot fix (they are rethrown at once). A diagnosed
   * LifeboatError (missing bucket, access denied, …) is never retried. */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  signal?: AbortSignal;
}

/** Calls `fn` until it succeeds or attempts run out; then rethrows the last error. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const permanent = err instanceof LifeboatError || err instanceof Deno.errors.NotCapable ||
        (o.retryable && !o.retryable(err));
      if (attempt >= o.attempts || o.signal?.aborted || permanent) {
        throw err;
      }
      const cap = Math.min(o.maxMs ?? 8000, o.baseMs * 2 ** (attempt - 1));
      const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
      o.onRetry?.(err, attempt, delay);
      await o.clock.sleep(delay, o.signal);
    }
  }
}
