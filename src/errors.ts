/**
 * Error rules, as properties rather than class names:
 *
 * - **shown**: a `ShownError` is written for a person. `oneLine` prints its message and hint as
 *   one line (never a stack trace or a class name) and `exitCodeOf` returns its exit code. Any
 *   other thrown value is a bug or a raw failure: it prints as `Name: message`, exit 1.
 * - **retryable**: `retry()` tries again unless `isRetryable` says no: a `ShownError` says so
 *   itself (`retryable`); a missing Deno permission never is; anything else (a reset connection,
 *   an SDK failure nobody diagnosed) is, since it may well pass the next time.
 *
 * `LifeboatError` is shown and permanent (configuration, access denied, a damaged database);
 * `TransientError` is shown and retryable (a server error, a timeout, a store that did not
 * confirm a write).
 */

/** Exit code for a failed operation (store unreachable, verification failed, …). */
export const EXIT_FAILURE = 1;
/** Exit code for bad usage or configuration. */
export const EXIT_USAGE = 2;

/** An error meant for a person: a one-line message, what to do about it, an exit code, and
 * whether retrying may help. */
export class ShownError extends Error {
  /** Builds an error whose `message` and `hint` are shown verbatim, never with a stack trace. */
  constructor(
    message: string,
    readonly hint: string,
    readonly exitCode: number,
    readonly retryable: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "ShownError";
  }
}

/** A shown failure that retrying cannot fix: `retry()` rethrows it at once. */
export class LifeboatError extends ShownError {
  /** Builds a permanent error; `message` and `hint` are shown verbatim. */
  constructor(
    message: string,
    hint: string = "",
    exitCode: number = EXIT_FAILURE,
    options?: ErrorOptions,
  ) {
    super(message, hint, exitCode, false, options);
    this.name = "LifeboatError";
  }
}

/**
 * A shown failure worth retrying (a server error, a timeout, a write the store did not confirm):
 * `retry()` keeps retrying it, and callers may wrap it in their context. Exit code 1.
 */
export class TransientError extends ShownError {
  /** Builds an error shown as `message. hint` by `oneLine`, keeping the cause for debugging. */
  constructor(message: string, hint: string, cause?: unknown) {
    super(message, hint, EXIT_FAILURE, true, { cause });
    this.name = "TransientError";
  }
}

/** Returns a configuration error (exit code 2, not retryable) with its fix. */
export function configError(message: string, hint: string): LifeboatError {
  return new LifeboatError(message, hint, EXIT_USAGE);
}

/** Returns an operation error (exit code 1, not retryable) with its fix, keeping the cause. */
export function operationError(message: string, hint: string, cause?: unknown): LifeboatError {
  return new LifeboatError(message, hint, EXIT_FAILURE, { cause });
}

/** True when `retry()` may try again after `err` (see the rules at the top); never throws. */
export function isRetryable(err: unknown): boolean {
  if (err instanceof ShownError) return err.retryable;
  // A missing Deno permission (--allow-…) never grants itself.
  return !(err instanceof Deno.errors.NotCapable);
}

/** True for a diagnosed, permanent failure: callers pass it on as it is, without their context. */
export function isFinal(err: unknown): err is ShownError {
  return err instanceof ShownError && !err.retryable;
}

/** Renders any thrown value as one line: message, then the hint; never a stack trace. */
export function oneLine(err: unknown): string {
  if (err instanceof ShownError) {
    // A message that ends in a full stop (as servers' do) gets no second one before the hint.
    const text = err.hint ? `${err.message.replace(/[.\s]+$/, "")}. ${err.hint}` : err.message;
    return flatten(text);
  }
  if (err instanceof Error) return flatten(`${err.name}: ${err.message}`);
  return flatten(String(err));
}

/** Returns the exit code that a thrown value maps to (1 unless a ShownError says otherwise). */
export function exitCodeOf(err: unknown): number {
  return err instanceof ShownError ? err.exitCode : EXIT_FAILURE;
}

function flatten(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
