/** Runs the app as a child process: inherited stdio, forwarded signals, its exit code back. */
import { resolve } from "node:path";
import { configError, type LifeboatError } from "./errors.ts";
import { signalExitCode } from "./signals.ts";

/** A running child. */
export interface Child {
  readonly pid: number;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  readonly exitCode: Promise<number>;
  /** Sends a signal; ignored if the child already exited. */
  signal(sig: Deno.Signal): void;
}

/** The config error (exit 2) for a program that cannot be found: one message, one hint. */
function commandNotFound(prog: string): LifeboatError {
  return configError(
    `command not found: ${prog}`,
    prog.includes("/") ? "Check the path after `--`" : "Check the command after `--` and PATH",
  );
}

/**
 * Returns `cmd` if its program can be run: a path to an executable file, or a name found on
 * `path` (PATH's value). Throws the config error of `startChild` otherwise, before anything starts.
 */
export function checkCommand(cmd: string[], path: string | undefined): string[] {
  if (cmd.length === 0) return cmd;
  const prog = cmd[0];
  const candidates = prog.includes("/")
    ? [resolve(prog)]
    : (path ?? "").split(":").filter(Boolean).map((d) => resolve(d, prog));
  const runnable = candidates.some((p) => {
    try {
      const st = Deno.statSync(p);
      return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
  if (!runnable) throw commandNotFound(prog);
  return cmd;
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
      throw commandNotFound(cmd[0]);
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
