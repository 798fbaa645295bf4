/**
 * `watch`'s jobs in a short-lived child process: this same program started again as a job
 * process (`job.ts`), so that the AWS SDK, the store modules and a backup's buffers live and die
 * there, never in the long-lived supervisor. The parent passes the run's context (the config),
 * what the previous job learned (`carry`) and the job on stdin; the child answers on stdout and
 * logs on the shared stderr. A child that crashes or is killed fails its job; a child that does
 * not stop within JOB_STOP_GRACE_MS of an abort is killed.
 */
import { oneLine, operationError } from "../errors.ts";
import {
  ABORT_MESSAGE,
  encodeLine,
  JOB_ARG,
  lines,
  relayedError,
  type WireError,
} from "../job_pipe.ts";
import { selfCommand } from "../self_exec.ts";
import type { RunDb } from "../store/history.ts";
import { cleanStaleTemps } from "../tempfiles.ts";
import type { BackupResult, BackupState } from "./backup.ts";
import type { DrillOptions, DrillResult } from "./drill.ts";
import type { BackupItem, Jobs } from "./jobs.ts";
import type { RestoreOptions, RestoreResult } from "./restore.ts";
import { installStaged, type Staged } from "./staged_install.ts";

/** How long a job process may take to stop after an abort before it gets SIGKILL. */
export const JOB_STOP_GRACE_MS = 3_000;

/** One job, as the parent asks for it. */
export type Job =
  | { kind: "backups"; items: readonly BackupItem[]; limit: number }
  | { kind: "drill"; o: DrillOptions }
  | { kind: "restore"; dbs: readonly RunDb[]; o: RestoreOptions };

/** What the parent writes first: the run's context, what earlier jobs learned, the job. */
export interface JobRequest {
  context: unknown;
  carry?: unknown;
  job: Job;
}

/** One line of a job process's answer. */
export type JobReply =
  | { kind: "backup"; index: number; state: BackupState; result?: BackupResult; error?: WireError }
  | { kind: "drill"; result?: DrillResult; error?: WireError }
  | Staged
  | { kind: "restore"; results?: RestoreResult[]; error?: WireError }
  | { kind: "end"; carry?: unknown };

/** Where the parent's own installs of a restore's files go (snapshot/install.ts's, loaded late). */
export type Install = (tmp: string, db: string) => Promise<void>;

/** A restore never stops half-way for a signal: watch decides once it is over (as in one process). */
const NEVER = new AbortController().signal;

/**
 * Jobs run in child processes of this program, each handed `context` (the run's config, as JSON).
 * What one job's process learned about the store (`carry`) is passed to the next. A restore's
 * verified files are installed here, by `install`, under this process's locks.
 */
export function childJobs(context: unknown, install: () => Promise<Install>): Jobs {
  let carry: unknown;
  const run = async (job: Job, signal: AbortSignal, onReply: OnReply) => {
    await runJobProcess({ context, carry, job }, signal, async (r, respond) => {
      if (r.kind === "end") carry = r.carry;
      else await onReply(r, respond);
    });
  };
  return {
    async backups(items, limit, signal, ended) {
      const done = new Set<number>();
      let failure: unknown;
      try {
        await run({ kind: "backups", items, limit }, signal, (r) => {
          if (r.kind !== "backup" || done.has(r.index) || !items[r.index]) return;
          done.add(r.index);
          replaceState(items[r.index].state, r.state);
          ended(
            r.index,
            r.result
              ? { ok: true, result: r.result }
              : { ok: false, error: relayedError(r.error!) },
          );
        });
      } catch (err) {
        failure = err;
      }
      items.forEach((_, i) => {
        if (!done.has(i)) ended(i, { ok: false, error: failure ?? endedWithout("backup") });
      });
    },
    async drill(o, signal) {
      let reply: Extract<JobReply, { kind: "drill" }> | undefined;
      await run({ kind: "drill", o }, signal, (r) => {
        if (r.kind === "drill") reply = r;
      });
      if (reply?.result) return reply.result;
      throw reply?.error ? relayedError(reply.error) : endedWithout("drill");
    },
    async restore(dbs, o) {
      let reply: Extract<JobReply, { kind: "restore" }> | undefined;
      try {
        await run({ kind: "restore", dbs, o: restoreOptions(o) }, NEVER, async (r, respond) => {
          if (r.kind === "staged") respond(await installStaged(r, dbs, await install()));
          if (r.kind === "restore") reply = r;
        });
      } finally {
        // A child that died mid-download left its file: ours to remove, under our locks.
        for (const db of dbs) await cleanStaleTemps(db.path);
      }
      if (reply?.results) return reply.results;
      throw reply?.error ? relayedError(reply.error) : endedWithout("restore");
    },
  };
}

/** Exactly the restore's options, out of a larger object (watch's, the run's whole config). */
function restoreOptions(o: RestoreOptions): RestoreOptions {
  const { force, attempts, retryBaseMs, allowEmpty, restoreCheck, from, machine } = o;
  return { force, attempts, retryBaseMs, allowEmpty, restoreCheck, from, machine };
}

/** The error of a job process that exited cleanly without answering (a bug). */
function endedWithout(what: string): Error {
  return operationError(
    `lifeboat's ${what} process ended without reporting a result`,
    "",
  );
}

/** Makes `target` hold exactly `next`'s fields (a state object others keep a reference to). */
function replaceState(target: BackupState, next: BackupState): void {
  for (const k of Object.keys(target)) delete (target as Record<string, unknown>)[k];
  Object.assign(target, next);
}

/** Takes one reply line of a job process; `respond` writes a message to its stdin. */
type OnReply = (r: JobReply, respond: (message: unknown) => Promise<void>) => void | Promise<void>;

/**
 * Starts a job process, sends it `request`, passes each reply line to `onReply` (the next line
 * waits for it) and resolves
 * when it exited cleanly. When `signal` aborts, asks it to stop, and kills it (SIGKILL) if it
 * has not exited JOB_STOP_GRACE_MS later. Throws a one-line error when it could not start,
 * crashed, was killed or exited with a failure code; never hangs on a dead child.
 */
export async function runJobProcess(
  request: JobRequest,
  signal: AbortSignal,
  onReply: OnReply,
): Promise<void> {
  const what = { drill: "restore drill", backups: "backup", restore: "restore" }[request.job.kind];
  const { command, args } = selfCommand([JOB_ARG]);
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args,
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  } catch (err) {
    throw operationError(
      `cannot start lifeboat's ${what} process (${command}): ${oneLine(err)}`,
      "",
      err,
    );
  }
  const stdin = child.stdin.getWriter();
  const send = (bytes: Uint8Array) => stdin.write(bytes).catch(() => {}); // gone: status says why
  let killer: ReturnType<typeof setTimeout> | undefined;
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  };
  const stop = () => {
    const why = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
    send(encodeLine({ ...ABORT_MESSAGE, reason: why }));
    killer = setTimeout(kill, JOB_STOP_GRACE_MS);
  };
  try {
    await send(encodeLine(request));
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
    for await (const line of lines(child.stdout)) {
      if (line.startsWith("{")) {
        await onReply(JSON.parse(line) as JobReply, (m) => send(encodeLine(m)));
      }
    }
    const status = await child.status;
    if (!status.success) {
      const how = status.signal
        ? `was killed by ${status.signal}`
        : `exited with code ${status.code}`;
      throw operationError(
        `lifeboat's ${what} process (pid ${child.pid}) ${how} before it finished`,
        "",
      );
    }
  } catch (err) {
    kill(); // an answer it could not have meant: never left running
    throw err;
  } finally {
    signal.removeEventListener("abort", stop);
    clearTimeout(killer);
    await stdin.close().catch(() => {});
    await child.status;
  }
}
