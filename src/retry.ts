/** Retrying with exponential backoff and jitter, on an injected clock. */
import type { Logger } from "@logtape/logtape";
import type { Clock } from "./clock.ts";
import { formatDuration } from "./duration.ts";
import { isRetryable, oneLine } from "./errors.ts";

/** The longest wait between two attempts. */
const MAX_DELAY_MS = 8000;

/** How to retry: attempts in all, the first delay, and a hook to log each retry. */
export interface RetryOptions {
  attempts: number;
  baseMs: number;
  clock: Clock;
  /** Return false for more errors that retrying cannot fix (they are rethrown at once), on top
   * of those `isRetryable` refuses (a LifeboatError: missing bucket, access denied, …). */
  retryable?: (err: unknown) => boolean;
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
  /** Stops retrying (the last error is rethrown) and cuts a wait short once aborted. */
  signal?: AbortSignal;
}

/**
 * Calls `fn` (with the attempt number, from 1) until it succeeds or attempts run out; rethrows
 * the last error, or at once an error that `isRetryable` or `o.retryable` refuses.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const permanent = !isRetryable(err) || (o.retryable && !o.retryable(err));
      if (attempt >= o.attempts || o.signal?.aborted || permanent) {
        throw err;
      }
      const cap = Math.min(MAX_DELAY_MS, o.baseMs * 2 ** (attempt - 1));
      const delay = Math.round(cap / 2 + Math.random() * (cap / 2));
      o.onRetry?.(err, attempt, delay);
      await o.clock.sleep(delay, o.signal);
    }
  }
}

/** An `onRetry` that logs each retry of `what` on `log` as a warning (event `retry`). */
export function logRetries(log: Logger, what: string): NonNullable<RetryOptions["onRetry"]> {
  return (err, attempt, delay) =>
    log.warn("{what} failed (attempt {attempt}), retrying in {delay}: {error}", {
      event: "retry",
      what,
      attempt,
      delay: formatDuration(delay),
      error: oneLine(err),
    });
}
