/** Errors that carry an exit code and a hint a person can act on. */

/** Exit code for a failed operation (store unreachable, verification failed, …). */
export const EXIT_FAILURE = 1;
/** Exit code for bad usage or configuration. */
export const EXIT_USAGE = 2;

/** An error meant for a person: a one-line message, what to do about it, and an exit code. */
export class LifeboatError extends Error {
  /** Builds an error whose `message` and `hint` are shown verbatim, never with a stack trace. */
  constructor(
    message: string,
    readonly hint: string = "",
    readonly exitCode: number = EXIT_FAILURE,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "LifeboatError";
  }
}

/**
 * A failure worth retrying (a server error, a timeout) that still reads as one line with a hint.
 * Not a LifeboatError: `retry()` keeps retrying it, and callers may wrap it in their context.
 */
export class TransientError extends Error {
  /** Builds an error shown as `message. hint` by `oneLine`, keeping the cause for debugging. */
  constructor(message: string, readonly hint: string, cause?: unknown) {
    super(message, { cause });
    this.name = "TransientError";
  }
}

/** Returns a configuration error (exit code 2) with its fix. */
export function configError(message: string, hint: string): LifeboatError {
  return new LifeboatError(message, hint, EXIT_USAGE);
}

/** Returns an operation error (exit code 1) with its fix, keeping the cause for debugging. */
export function operationError(message: string, hint: string, cause?: unknown): LifeboatError {
  return new LifeboatError(message, hint, EXIT_FAILURE, { cause });
}

/** Renders any thrown value as one line: message, then the hint; never a stack trace. */
export function oneLine(err: unknown): string {
  if (err instanceof LifeboatError || err instanceof TransientError) {
    // A message that ends in a full stop (as servers' do) gets no second one before the hint.
    const text = err.hint ? `${err.message.replace(/[.\s]+$/, "")}. ${err.hint}` : err.message;
    return flatten(text);
  }
  if (err instanceof Error) return flatten(`${err.name}: ${err.message}`);
  return flatten(String(err));
}

/** Returns the exit code that a thrown value maps to (1 unless it says otherwise). */
export function exitCodeOf(err: unknown): number {
  return err instanceof LifeboatError ? err.exitCode : EXIT_FAILURE;
}

function flatten(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").trim();
}
