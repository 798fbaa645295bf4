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
  if (err instanceof LifeboatError) {
    const text = err.hint ? `${err.message}. ${err.hint}` : err.message;
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
