/** Runs the app as a child process: inherited stdio, forwarded signals, its exit code back. */
import { configError } from "./errors.ts";
import { signalExitCode } from "./signals.ts";

/** A running child. */
export interface Child {
  readonly pid: number;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  readonly exitCode: Promise<number>;
  /** Sends a signal; ignored if the child already exited. */
  signal(sig: Deno.Signal): void;
}

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
    // 128 + N for every signal N, as a shell reports it.
    return s.signal ? signalExitCode(s.signal) : s.code;
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
