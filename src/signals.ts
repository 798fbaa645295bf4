/**
 * Signals, caught from the first line of `main` on: every catchable signal a supervisor must
 * either handle or forward (like tini), queued until a command subscribes, so that a signal that
 * arrives early (as PID 1 there is no default action to fall back on) is never lost or fatal.
 */

/** Linux signal numbers, for exit codes (128 + N). */
const NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPOLL: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** Returns 128 + the signal's number (the shell's exit code for a process it killed); 128 if unknown. */
export function signalExitCode(sig: string): number {
  return 128 + (NUMBERS[sig] ?? 0);
}

/** The signals that stop lifeboat (after forwarding them to the app and a final backup). */
export const SHUTDOWN_SIGNALS: readonly Deno.Signal[] = ["SIGTERM", "SIGINT"];

/**
 * The signals lifeboat only passes on to the app. Left out: the ones the runtime may not bind
 * (KILL, STOP, SEGV, ILL, FPE), synchronous faults of lifeboat's own (BUS, ABRT, TRAP, SYS),
 * job control (TSTP, TTIN, TTOU), SIGCHLD and SIGPIPE.
 */
export const FORWARDED_SIGNALS: readonly Deno.Signal[] = [
  "SIGHUP",
  "SIGQUIT",
  "SIGUSR1",
  "SIGUSR2",
  "SIGWINCH",
  "SIGALRM",
  "SIGCONT",
  "SIGURG",
  "SIGVTALRM",
  "SIGPROF",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGIO",
  "SIGPWR",
];

/** Signals whose default action leaves a process running: with no one to pass them to, ignore. */
const HARMLESS = new Set<Deno.Signal>(["SIGWINCH", "SIGCONT", "SIGURG"]);

/** Where signals come from (the process, or a test). */
export interface SignalSource {
  /**
   * Calls `fn` for every signal received, including the ones that arrived before this call,
   * until the returned function is called.
   */
  onSignal(fn: (sig: Deno.Signal) => void): () => void;
}

let pending: Deno.Signal[] | undefined;
let holding = false;
let subscriber: ((sig: Deno.Signal) => void) | undefined;

/**
 * Installs lifeboat's handlers for every shutdown and forwarded signal; call it before anything
 * else. Until a command subscribes (`processSignals`), a signal is queued once `holdSignals` was
 * called (watch takes them over) and otherwise ends the process with 128 + N, as its default
 * action would. Never throws: a signal the platform refuses is left alone.
 */
export function installSignalHandlers(): void {
  if (pending) return;
  pending = [];
  for (const sig of [...SHUTDOWN_SIGNALS, ...FORWARDED_SIGNALS]) {
    try {
      Deno.addSignalListener(sig, () => {
        if (subscriber) subscriber(sig);
        else if (holding) pending!.push(sig);
        else if (!HARMLESS.has(sig)) Deno.exit(signalExitCode(sig));
      });
    } catch {
      // Not available on this platform.
    }
  }
}

/** From now on, signals wait for `processSignals.onSignal` instead of ending the process. */
export function holdSignals(): void {
  installSignalHandlers();
  holding = true;
}

/** The process's signals, as caught by `installSignalHandlers` (installed on first use if not yet). */
export const processSignals: SignalSource = {
  onSignal(fn) {
    holdSignals();
    subscriber = fn;
    for (const sig of pending!.splice(0)) fn(sig);
    return () => {
      if (subscriber === fn) subscriber = undefined;
    };
  },
};
