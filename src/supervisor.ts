/** Runs the app as a child process: inherited stdio, forwarded signals, its exit code back. */
import { configError } from "./errors.ts";

/** A running child. */
export interface Child {
  readonly pid: number;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  readonly exitCode: Promise<number>;
  /** Sends a signal; ignored if the child already exited. */
  signal(sig: Deno.Signal): void;
}

const SIGNAL_NUMBERS: Partial<Record<Deno.Signal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
};

/** Starts `cmd` with the parent's stdio; throws a config error if the program cannot be found. */
export function startChild(cmd: string[]): Child {
  let proc: Deno.ChildProcess;
  try {
    proc = new Deno.Command(cmd[0], {
      args: cmd.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw configError(`command not found: ${cmd[0]}`, "Check the command after `--`");
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw configError(`cannot run ${cmd[0]}: permission denied`, "Make it executable");
    }
    throw e;
  }
  let exited = false;
  const exitCode = proc.status.then((s) => {
    exited = true;
    return s.signal ? 128 + (SIGNAL_NUMBERS[s.signal] ?? 0) : s.code;
  });
  return {
    pid: proc.pid,
    exitCode,
    signal(sig) {
      if (exited) return;
      try {
        proc.kill(sig);
      } catch {
        // Exited between the check and the kill.
      }
    },
  };
}

/** Where shutdown signals come from (the process, or a test). */
export interface SignalSource {
  /** Calls `fn` on every SIGTERM or SIGINT until the returned function is called. */
  onShutdown(fn: (sig: Deno.Signal) => void): () => void;
}

/** The process's own SIGTERM and SIGINT. */
export const processSignals: SignalSource = {
  onShutdown(fn) {
    const sigs: Deno.Signal[] = ["SIGTERM", "SIGINT"];
    const handlers = sigs.map((sig) => {
      const h = () => fn(sig);
      Deno.addSignalListener(sig, h);
      return [sig, h] as const;
    });
    return () => handlers.forEach(([sig, h]) => Deno.removeSignalListener(sig, h));
  },
};
