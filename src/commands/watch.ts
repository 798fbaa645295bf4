/**
 * `lifeboat watch [-- CMD…]`: restore, then run the app (optionally) and back up every interval,
 * with one final backup when the app exits or the container is stopped.
 */
import { formatDuration } from "../duration.ts";
import { oneLine } from "../errors.ts";
import { isWalMode } from "../dbfile.ts";
import { statIfExists } from "../fsutil.ts";
import { logger } from "../log.ts";
import { type DbMetrics, Metrics } from "../metrics.ts";
import { FORWARDED_SIGNALS, SHUTDOWN_SIGNALS, type SignalSource } from "../signals.ts";
import { type Child, startChild } from "../supervisor.ts";
import { isHeir } from "../store/history.ts";
import type { DatabaseSpec } from "../store/settings.ts";
import type { ManifestKeeper } from "../store/manifest_keeper.ts";
import type { Retention } from "../store/retention.ts";
import type { BackupOptions, BackupState } from "./backup.ts";
import type { Clock } from "../clock.ts";
import type { Store } from "../store/store.ts";
import { DrillSchedule, type DrillTarget } from "./drill_schedule.ts";
import type { BackupEnd, Jobs } from "./jobs.ts";
import type { RestoreOptions, RestoreResult } from "./restore.ts";
import { mapBounded, withDbLabel } from "./several.ts";

const log = logger("watch");

/** What watch needs to know. */
export interface WatchOptions extends RestoreOptions {
  /** Every database of the run (one or more). */
  databases: DatabaseSpec[];
  /** This machine's name, for keys and metadata. */
  machine: string;
  /** Milliseconds between backups. */
  interval: number;
  /** The app to run as a child; empty to run without one. */
  command: string[];
  /** Upper bound for the final backup. */
  shutdownTimeoutMs: number;
  /** How long the app may take to exit after a forwarded SIGTERM/SIGINT; then SIGKILL. */
  appStopTimeoutMs: number;
  /** On a fly.io release machine: run the app only, no restore, no backup. */
  releaseCommand?: boolean;
  /** How many databases are backed up at once (default 1). */
  backupConcurrency?: number;
  /** Milliseconds between restore drills of each database (`drill.ts`); 0 or absent: none. */
  drillInterval?: number;
}

/** One database under watch: what its backups need, its metrics and its backup state. */
interface Watched {
  db: BackupOptions;
  metrics: DbMetrics;
  state: BackupState;
  walChecked?: boolean;
}

/** What watch touches outside itself. */
export interface WatchDeps {
  clock: Clock;
  /** The store, for jobs run in this process (no `jobs`); its location names it in logs. */
  store?: Store;
  /** How logs name the store when no `store` is given (`Store.location`). */
  location?: string;
  signals: SignalSource;
  /**
   * Records each database's restore, backups and drills (by name: the target's, else derived
   * from its file); the stale-backup check reads its age. Default: new.
   */
  metrics?: Metrics;
  /** Supersedes and keeps after each backup (store/retention.ts); none: nothing. */
  retention?: Retention;
  /** Keeps the store's manifest listing the databases; none: not touched. */
  manifest?: ManifestKeeper;
  /**
   * Where the restore, backups and restore drills run (jobs.ts): the CLI runs them in
   * short-lived child processes (isolated.ts). Default: in this process, against `store` (its
   * modules loaded then, never when `jobs` is given).
   */
  jobs?: Jobs;
}

/**
 * Restores (throwing, before anything starts, if that fails), then supervises. Resolves with
 * the exit code: the child's, or 0 without a child; 1 when the final backup failed and the
 * child exited 0. Backups never overlap; a failed periodic backup is logged and retried at the
 * next tick. With several databases every one is restored at once and all must succeed before
 * the app starts; each interval backs them up `backupConcurrency` at a time (one failing never
 * stops the others), and the final backups of all share the one shutdown budget. Signals are
 * taken over before the restore: SIGTERM/SIGINT stop (and are forwarded), every other catchable
 * signal is forwarded to the app. An app still running
 * `appStopTimeoutMs` after a forwarded stop signal gets SIGKILL, and the final backup runs.
 */
export async function watch(o: WatchOptions, deps: WatchDeps): Promise<number> {
  const stopping = new AbortController();
  let inflight: AbortController | undefined;
  let child: Child | undefined;
  let childCode: number | undefined;
  const removeSignals = deps.signals.onSignal((sig) => {
    if (!SHUTDOWN_SIGNALS.includes(sig)) return forward(sig, child);
    log.info("received {sig}, shutting down{forward}", {
      event: "signal",
      sig,
      forward: child ? `: forwarding to the app (pid ${child.pid})` : "",
    });
    if (child) child.signal(sig);
    else inflight?.abort(new Error(`${sig} received`));
    stopping.abort(sig);
  });
  try {
    if (o.releaseCommand) return await runReleaseCommand(o);
    const dbs = o.databases;
    const metrics = deps.metrics ?? new Metrics(deps.clock, o, dbs.map((d) => d.name));
    const metricsOf = (name: string) => metrics.of(name);
    const restoreStarted = deps.clock.now();
    const jobs = deps.jobs ?? await jobsHere(deps);
    const restored = await jobs.restore(dbs, o).catch((err) => {
      const ms = deps.clock.now() - restoreStarted;
      for (const d of dbs) metricsOf(d.name).restored({ outcome: "failed", ms });
      throw err;
    });
    const watched = dbs.map((d, i): Watched => {
      const r = restored[i];
      const w: Watched = {
        db: { db: d.path, name: d.name, machine: o.machine, heir: isHeir(d, dbs) },
        metrics: metricsOf(d.name),
        // After a fallback (the newest backup failed verification) the restored data is not the
        // store's newest: the first backup must upload it, even unchanged, so a sound one sorts
        // first; only the restored backup is ever superseded, never the ones passed over.
        state: {
          lastSha256: r.key === r.newestKey ? r.sha256 : undefined,
          knownNewest: r.newestKey,
          basedOn: r.key,
        },
      };
      w.metrics.restored(r);
      if (r.outcome === "restored") {
        warnIfOverBudget(o, r.ms, "the restore (a backup moves the same bytes)");
      }
      if (r.bypassed?.length) reportBypassed(d.name, r);
      return w;
    });
    const each = (fn: (w: Watched) => Promise<unknown>) =>
      mapBounded(watched, 1, (w) => withDbLabel(w.db.name, () => fn(w)));
    const backupAll = (signal: AbortSignal, final: boolean) =>
      backupRound(watched, o, jobs, signal, final);
    await each(warnIfNotWal);
    if (stopping.signal.aborted) {
      log.info("{sig} arrived during the restore: not starting the app", {
        event: "stopped_before_start",
        sig: stopping.signal.reason,
      });
      return 0;
    }

    if (o.command.length > 0) {
      child = startChild(o.command);
      log.info("started {cmd} (pid {pid}); backing up every {interval}", {
        event: "child_started",
        cmd: o.command.join(" "),
        pid: child.pid,
        interval: formatDuration(o.interval),
      });
      child.exitCode.then((code) => {
        childCode = code;
        inflight?.abort(new Error("the app exited"));
        stopping.abort();
      });
    } else {
      log.info("watching {path}; backing up every {interval}", {
        event: "watch_started",
        path: dbs.map((d) => d.path).join(", "),
        interval: formatDuration(o.interval),
      });
    }

    // Restore drills run while the loop sleeps, after a round of backups; the next round waits
    // for one still running, so a drill never overlaps a backup.
    const drills = new DrillSchedule(o.drillInterval ?? 0, deps.clock);
    let drilling = Promise.resolve();
    while (!stopping.signal.aborted) {
      await Promise.all([deps.clock.sleep(o.interval, stopping.signal), drilling]);
      if (stopping.signal.aborted) break;
      inflight = new AbortController();
      const finished = new AbortController();
      const alarm = Promise.all(
        watched.map((w) =>
          withDbLabel(w.db.name, () => alarmWhileRunning(o, deps, w.metrics, finished.signal))
        ),
      );
      await backupAll(inflight.signal, false);
      finished.abort();
      await alarm;
      await each(warnIfNotWal);
      inflight = undefined;
      if (!stopping.signal.aborted) {
        await each((w) => Promise.resolve(errorIfStale(o, w.metrics)));
      }
      drilling = drills.runDue(
        watched.map((w) => drillTarget(w, o, deps, jobs)),
        stopping.signal,
      );
    }
    await drilling; // stopped by `stopping`: the final backups never overlap a drill

    if (child) {
      childCode = await stopApp(child, o, deps);
      log.info("the app exited with code {code}", { event: "child_exited", code: childCode });
    }
    const code = childCode ?? 0;

    const finalOk = (await backupAll(AbortSignal.timeout(o.shutdownTimeoutMs), true))
      .every(Boolean);
    return code === 0 && !finalOk ? 1 : code;
  } finally {
    removeSignals();
  }
}

/** Jobs run in this process against `deps.store` (tests); throws (a bug) without a store. */
async function jobsHere(deps: WatchDeps): Promise<Jobs> {
  if (!deps.store) throw new Error("watch needs `jobs` or a `store`");
  const { inProcessJobs } = await import("./jobs.ts");
  return inProcessJobs({ ...deps, store: deps.store });
}

/** A watched database as the drills see it: after a failed drill it is backed up at once. */
function drillTarget(w: Watched, o: WatchOptions, deps: WatchDeps, jobs: Jobs): DrillTarget {
  const drill = {
    db: w.db.db,
    name: w.db.name,
    attempts: o.attempts,
    retryBaseMs: o.retryBaseMs,
    restoreCheck: o.restoreCheck,
  };
  return {
    o: drill,
    location: deps.location ?? deps.store?.location ?? "the store",
    metrics: w.metrics,
    drill: (signal) => jobs.drill(drill, signal),
    backUpNow: (signal) => {
      w.state.lastSha256 = undefined; // the store's copy is in doubt: upload even if unchanged
      return backupRound([w], o, jobs, signal, false);
    },
  };
}

/** Warns once per database, when it first exists, that it is not in WAL mode. */
async function warnIfNotWal(w: Watched): Promise<void> {
  if (w.walChecked || !(await statIfExists(w.db.db))?.size) return;
  w.walChecked = true;
  if (!(await isWalMode(w.db.db))) {
    log.warn(
      "{db} is not in WAL mode: each backup holds a read lock that the app's writers wait on. " +
        "Run PRAGMA journal_mode=WAL once (it persists) to back up without blocking writers",
      { event: "not_wal", path: w.db.db },
    );
  }
}

/** Passes a signal lifeboat does not act on to the app; without an app it is logged and ignored. */
function forward(sig: Deno.Signal, child: Child | undefined): void {
  if (!FORWARDED_SIGNALS.includes(sig)) return;
  if (child) {
    log.debug("forwarded {sig} to the app (pid {pid})", {
      event: "forwarded",
      sig,
      pid: child.pid,
    });
    child.signal(sig);
  } else {
    log.info("received {sig}; no app to pass it to, ignored", { event: "signal_ignored", sig });
  }
}

/**
 * Logs, at error level, the backups newer than the one restored that failed verification: they
 * are never superseded (so they do not expire by a tag rule), and a person should look at them.
 */
function reportBypassed(name: string, r: RestoreResult): void {
  log.error(
    "{name} was restored from {key}, older than {count} backup(s) that failed verification " +
      "and were passed over: {bypassed}. They stay in the store, never marked as superseded; " +
      "inspect them (lifeboat list shows them) and restore one with --from KEY if it is sound",
    {
      event: "restore_bypassed",
      name,
      key: r.key,
      count: r.bypassed!.length,
      bypassed: r.bypassed!.map((b) => `${b.key} (${b.problem})`).join("; "),
    },
  );
}

/**
 * On a fly.io release machine (RELEASE_COMMAND set): runs the app alone. A restore there would
 * run the migration on a copy, and an upload would fork the database the live machine writes.
 */
async function runReleaseCommand(o: WatchOptions): Promise<number> {
  log.info(
    "RELEASE_COMMAND is set (a fly.io release machine): running {cmd} without restore or backup; " +
      "run migrations in the app's start command instead",
    { event: "release_command", cmd: o.command.join(" ") || "nothing" },
  );
  if (o.command.length === 0) return 0;
  return await startChild(o.command).exitCode;
}

/**
 * Waits for the app to exit; once it has been asked to stop, gives it `appStopTimeoutMs`, then
 * sends SIGKILL. Resolves with its exit code.
 */
async function stopApp(child: Child, o: WatchOptions, deps: WatchDeps): Promise<number> {
  const exited = new AbortController();
  const code = child.exitCode.finally(() => exited.abort());
  await deps.clock.sleep(o.appStopTimeoutMs, exited.signal);
  if (!exited.signal.aborted) {
    log.error(
      "the app (pid {pid}) did not exit within {budget} of the stop signal " +
        "(LIFEBOAT_APP_STOP_TIMEOUT): killing it (SIGKILL) to keep time for the final backup",
      { event: "app_killed", pid: child.pid, budget: formatDuration(o.appStopTimeoutMs) },
    );
    child.signal("SIGKILL");
  }
  return await code;
}

/**
 * While a periodic backup runs, repeats the stale-backup check every interval until `done`,
 * from two intervals after it started: a backup that is merely slow (it finishes within two
 * intervals) raises nothing; one that hangs is counted, not waited for.
 */
async function alarmWhileRunning(
  o: WatchOptions,
  deps: WatchDeps,
  metrics: DbMetrics,
  done: AbortSignal,
): Promise<void> {
  const started = deps.clock.now();
  await deps.clock.sleep(o.interval, done);
  for (;;) {
    await deps.clock.sleep(o.interval, done);
    if (done.aborted) return;
    errorIfStale(o, metrics, deps.clock.now() - started);
  }
}

/**
 * One round of backups of `watched` (`backupConcurrency` at once, in `jobs`) that never throws:
 * a missing or empty database is skipped, each failure logged and counted. Resolves with whether
 * each database's data is safely stored.
 */
async function backupRound(
  watched: readonly Watched[],
  o: WatchOptions,
  jobs: Jobs,
  signal: AbortSignal,
  final: boolean,
): Promise<boolean[]> {
  const what = final ? "final backup" : "backup";
  const safe = watched.map(() => true);
  const present: Watched[] = [];
  for (const w of watched) {
    // SQLite creates an empty file on open and writes the header with the first change: an
    // empty file holds nothing to lose yet, like a missing one.
    if ((await statIfExists(w.db.db))?.size) present.push(w);
    else await withDbLabel(w.db.name, () => Promise.resolve(skipped(w, what)));
  }
  const items = present.map((w) => ({ db: w.db, state: w.state }));
  await jobs.backups(items, o.backupConcurrency ?? 1, signal, (i, end) => {
    const w = present[i];
    let ok = false;
    // Runs at once (the label's context is entered synchronously); the promise is only its shape.
    void withDbLabel(w.db.name, () => Promise.resolve(ok = recordBackup(w, o, end, signal, final)));
    safe[watched.indexOf(w)] = ok;
  });
  return safe;
}

/** Counts and logs a database skipped because its file is missing or empty; never throws. */
function skipped(w: Watched, what: string): void {
  w.metrics.notBackedUp(
    "skipped",
    `${w.db.db} does not exist or is empty: is it the file the app writes?`,
  );
  log.info("{what} skipped: {path} does not exist yet or is empty", {
    event: "backup_skipped",
    what,
    path: w.db.db,
  });
}

/** Counts and logs how one backup ended; returns whether the data is safely stored. */
function recordBackup(
  w: Watched,
  o: WatchOptions,
  end: BackupEnd,
  signal: AbortSignal,
  final: boolean,
): boolean {
  const what = final ? "final backup" : "backup";
  if (end.ok) {
    w.metrics.backedUp(end.result);
    warnIfOverBudget(o, end.result.ms, what);
    return true;
  }
  const err = end.error;
  w.metrics.notBackedUp(signal.aborted ? "aborted" : "failed", oneLine(err));
  if (signal.aborted) {
    const why = final
      ? `cut short after ${formatDuration(o.shutdownTimeoutMs)} (LIFEBOAT_SHUTDOWN_TIMEOUT)`
      : "stopped for shutdown";
    const props = { event: "backup_aborted", what, why };
    if (final) log.error("{what} {why}", props);
    else log.info("{what} {why}", props);
  } else {
    log.error("{what} failed: {error}{retry}", {
      event: "backup_failed",
      what,
      error: oneLine(err),
      retry: final ? "" : "; will retry at the next interval",
    });
  }
  return false;
}

/**
 * Warns when a backup (or, at start, the restore: the same bytes the other way) took more than
 * half of the shutdown budget: the final backup may then be cut short.
 */
function warnIfOverBudget(o: WatchOptions, ms: number, what: string): void {
  if (ms <= o.shutdownTimeoutMs / 2) return;
  log.warn(
    "{what} took {duration}, more than half of LIFEBOAT_SHUTDOWN_TIMEOUT ({budget}): the final " +
      "backup may be cut short. Raise LIFEBOAT_SHUTDOWN_TIMEOUT, and fly.toml's kill_timeout above it",
    {
      event: "shutdown_budget",
      what,
      ms,
      duration: formatDuration(ms),
      budget: formatDuration(o.shutdownTimeoutMs),
    },
  );
}

/**
 * Logs an error when the database has not matched a backup for more than two intervals;
 * `runningMs` is how long the backup still in flight has been running, if one is.
 */
function errorIfStale(o: WatchOptions, metrics: DbMetrics, runningMs?: number): void {
  const age = metrics.backupAgeMs();
  if (age <= 2 * o.interval) return;
  log.error(
    "no successful backup for {age}, more than 2 intervals of {interval}: writes since then " +
      "are at risk{why}",
    {
      event: "backup_stale",
      ms: age,
      age: formatDuration(age),
      interval: formatDuration(o.interval),
      why: runningMs !== undefined
        ? ` (a backup has been running for ${formatDuration(runningMs)} without finishing)`
        : metrics.lastProblem
        ? ` (last: ${metrics.lastProblem})`
        : "",
    },
  );
}
