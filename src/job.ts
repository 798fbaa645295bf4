/**
 * A job process (`lifeboat --lifeboat-job`, started by `watch`: commands/isolated.ts): reads one
 * job from stdin, runs it in this process against the run's store, answers on stdout and exits.
 * Signals are left to the parent (a terminal's Ctrl-C reaches the whole process group); an abort
 * message, or EOF on stdin (the parent is gone), stops the job.
 */
import { systemClock } from "./clock.ts";
import type { JobReply, JobRequest } from "./commands/isolated.ts";
import { inProcessJobs } from "./commands/jobs.ts";
import { type Installed, stagingInstaller } from "./commands/staged_install.ts";
import type { Config } from "./config.ts";
import { encodeLine, lines, toWire } from "./job_pipe.ts";
import { markSetupRoutine, setupLogging } from "./log.ts";
import { addSecretsFromEnv } from "./redact.ts";
import { holdSignals } from "./signals.ts";
import type { RetentionMemory } from "./store/retention.ts";
import type { StoreMemory } from "./store/store.ts";
import { storeOf } from "./stores.ts";

/** What one job process hands the next through `watch`: what it learned about the store. */
interface Carry {
  retention: RetentionMemory;
  store: StoreMemory;
}

/** Runs the job read from stdin; resolves with the exit code (1 when no job could be read). */
export async function runJob(): Promise<number> {
  holdSignals();
  addSecretsFromEnv(Deno.env.toObject());
  const input = lines(Deno.stdin.readable);
  const first = await input.next();
  if (first.done) return 1;
  const request = JSON.parse(first.value) as JobRequest;
  const cfg = request.context as Config;
  await setupLogging(cfg.log);
  const stopping = new AbortController();
  const staging = stagingInstaller(answer);
  watchParent(input, stopping, staging.answered);
  stopping.signal.addEventListener("abort", () => staging.gone(stopping.signal.reason));
  const deps = { ...storeOf(cfg), clock: systemClock, install: staging.install };
  const carried = (request.carry ?? {}) as Partial<Carry>;
  if (carried.retention) deps.retention.remember(carried.retention);
  if (carried.store) deps.store.remember?.(carried.store);
  const jobs = inProcessJobs(deps);
  const job = request.job;
  // The restore at start says how this run reaches its store; each later job would repeat it.
  if (job.kind !== "restore") markSetupRoutine();
  if (job.kind === "backups") {
    await jobs.backups(job.items, job.limit, stopping.signal, (index, end) =>
      answer({
        kind: "backup",
        index,
        state: job.items[index].state,
        ...(end.ok ? { result: end.result } : { error: toWire(end.error) }),
      }));
  } else if (job.kind === "drill") {
    try {
      answer({ kind: "drill", result: await jobs.drill(job.o, stopping.signal) });
    } catch (err) {
      answer({ kind: "drill", error: toWire(err) });
    }
  } else {
    try {
      answer({ kind: "restore", results: await jobs.restore(job.dbs, job.o) });
    } catch (err) {
      answer({ kind: "restore", error: toWire(err) });
    }
  }
  const carry: Carry = { retention: deps.retention.memory, store: deps.store.memory?.() ?? {} };
  answer({ kind: "end", carry });
  return 0;
}

/**
 * Aborts `stopping` when the parent asks (with its reason) or its end of stdin closes; passes
 * the parent's answers to staged installs to `installed`.
 */
function watchParent(
  input: AsyncGenerator<string>,
  stopping: AbortController,
  installed: (m: Installed) => void,
): void {
  (async () => {
    for await (const line of input) {
      const m = line.startsWith("{") ? JSON.parse(line) : undefined;
      if (m?.abort) stopping.abort(new Error(String(m.reason ?? "stopped by lifeboat")));
      if (typeof m?.installed === "number") installed(m);
    }
    stopping.abort(new Error("lifeboat's watch process is gone"));
  })().catch((err) => stopping.abort(err));
}

/** Writes one reply line to stdout, whole. */
function answer(reply: JobReply): void {
  const bytes = encodeLine(reply);
  for (let off = 0; off < bytes.length;) off += Deno.stdout.writeSync(bytes.subarray(off));
}
