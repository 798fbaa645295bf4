/**
 * Restore drills: the newest backup of a database read back from the store and verified exactly
 * as restore would verify it (size and SHA-256 end to end, then the SQLite check), without
 * installing it. `watch` runs them (`DrillSchedule`: after the process's first successful backup,
 * then every LIFEBOAT_DRILL_INTERVAL); `lifeboat verify` runs one on demand (`verifyDatabases`).
 */
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import type { DbMetrics, DrillRecord } from "../metrics.ts";
import { redactLine } from "../redact.ts";
import { logRetries, retry } from "../retry.ts";
import type { RestoreCheck, Verified } from "../snapshot/install.ts";
import { readDbHistory } from "../store/history.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { fromStore, readVerified } from "./readback.ts";
import { RETRY_BASE_MS, VERIFY_ATTEMPTS } from "./restore.ts";
import { withDbLabel } from "./several.ts";

const log = logger("drill");

/** What a drill needs to know. */
export interface DrillOptions {
  /** The database: a SQLite check that must run reads a temporary copy beside it. */
  db: string;
  /** Its store name: its backups are this name's (store/history.ts). */
  name: string;
  /** Attempts at each store request before the store counts as unreachable. */
  attempts: number;
  /** The first wait between attempts; RETRY_BASE_MS unless a test needs it shorter. */
  retryBaseMs?: number;
  /** The SQLite check after the SHA-256 matched, as restore runs it (LIFEBOAT_RESTORE_CHECK). */
  restoreCheck?: RestoreCheck;
}

/** What a drill touches outside itself. */
export interface DrillDeps {
  store: Store;
  clock: Clock;
}

/** How one drill ended: the metrics' record, what failed (for a person) and the size read. */
export interface DrillResult extends DrillRecord {
  /** What failed, in words; absent when the backup verified. */
  problem?: string;
  /** The size of the verified backup. */
  bytes?: number;
}

/**
 * Reads the store's newest backup of database `o.name` (one stream, never ranges in parallel) and verifies
 * it as restore would: a backup that fails is read again (VERIFY_ATTEMPTS in all) before it
 * counts as damaged, and store requests are retried with backoff (`o.attempts`). Never installs
 * anything and never writes to the store; a temporary file beside the database, only when a
 * SQLite check must run, is removed on every path. Resolves with the outcome (see DrillOutcome);
 * throws only when `signal` aborts.
 */
export async function drillOnce(
  o: DrillOptions,
  deps: DrillDeps,
  signal?: AbortSignal,
): Promise<DrillResult> {
  const started = deps.clock.now();
  const ms = () => deps.clock.now() - started;
  const withRetry = <T>(what: string, fn: () => Promise<T>, retryable: (e: unknown) => boolean) =>
    retry(fn, {
      attempts: o.attempts,
      baseMs: o.retryBaseMs ?? RETRY_BASE_MS,
      clock: deps.clock,
      signal,
      retryable,
      onRetry: logRetries(log, what),
    });
  const where = deps.store.location;
  let newest: BackupInfo | undefined;
  try {
    [newest] = await withRetry(
      "listing backups",
      async () => (await readDbHistory(deps.store, o.name, 1)).own,
      () => true,
    );
  } catch (err) {
    if (signal?.aborted) throw err;
    return {
      outcome: "unreachable",
      problem: `cannot list the backups in ${where}: ${oneLine(err)}`,
      ms: ms(),
    };
  }
  if (!newest) {
    return { outcome: "missing", problem: `${where} holds no backup of ${o.name}`, ms: ms() };
  }
  const key = newest.key;
  const tmp = tempPathBeside(o.db);
  try {
    let got: Verified | undefined;
    for (let attempt = 1; attempt <= VERIFY_ATTEMPTS && !got?.ok; attempt++) {
      got = await withRetry(
        `reading ${key}`,
        () =>
          readVerified(deps.store, key, tmp, {
            mode: "drill",
            check: o.restoreCheck,
            signal,
            sealed: newest.sha256,
          }),
        fromStore, // an error of this machine's (disk, temporary file) will not pass by itself
      );
      if (!got.ok && attempt < VERIFY_ATTEMPTS) {
        log.warn("backup {key} failed verification ({problem}); reading it again", {
          event: "drill_reread",
          key,
          problem: got.problem,
          attempt,
        });
      }
    }
    if (!got?.ok) return { outcome: "damaged", key, problem: got?.problem, ms: ms() };
    return { outcome: "verified", key, bytes: got.size, ms: ms() };
  } catch (err) {
    if (signal?.aborted) throw err;
    return fromStore(err)
      ? {
        outcome: "unreachable",
        key,
        problem: `cannot read it from ${where}: ${oneLine(err)}`,
        ms: ms(),
      }
      : { outcome: "local", key, problem: oneLine(err), ms: ms() };
  } finally {
    await removeTemp(tmp);
  }
}

/** One sentence for a person: what the drill found, and for a failure which kind it was. */
export function describeDrill(r: DrillResult): string {
  const not = "the backup is not known to be damaged";
  switch (r.outcome) {
    case "verified":
      return `verified ${r.key} (${r.bytes} bytes, as restore would) in ${formatDuration(r.ms)}`;
    case "damaged":
      return `DAMAGED: ${r.key} failed verification (${r.problem}): restore would skip it`;
    case "missing":
      return `MISSING: ${r.problem}`;
    case "unreachable":
      return `UNREACHABLE: ${r.key ? `${r.key}: ` : ""}${r.problem}; ${not}`;
    case "local":
      return `NOT VERIFIED on this machine: ${r.key ? `${r.key}: ` : ""}${r.problem}; ${not}`;
  }
}

/** One database as the drill schedule sees it. */
export interface DrillTarget {
  o: DrillOptions;
  deps: DrillDeps;
  metrics: DbMetrics;
  /** Runs the drill (e.g. in a child process); default: `drillOnce(o, deps)` in this process. */
  drill?: (signal: AbortSignal) => Promise<DrillResult>;
  /** Backs the database up at once, never skipped as unchanged; never throws. */
  backUpNow(signal: AbortSignal): Promise<unknown>;
}

/** When a database's next drill is due. */
interface Due {
  /** Due only once the database has had more successful backups than this. */
  afterBackups: number;
  /** Due only from this time on (the clock's milliseconds). */
  notBefore: number;
}

/**
 * `watch`'s restore drills: when each database's next one is due, and running them. A database
 * is first drilled after its first successful backup of this process; after a drill that passed,
 * `intervalMs` later; after one that failed, after its next successful backup.
 */
export class DrillSchedule {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #due = new Map<DbMetrics, Due>();

  /** A schedule with `intervalMs` between drills of a database; 0 turns drills off. */
  constructor(intervalMs: number, clock: Clock) {
    this.#intervalMs = intervalMs;
    this.#clock = clock;
  }

  /**
   * Runs the drill of every database of `targets` that is due, one at a time, each under its
   * label: records it in its metrics, logs it (an error naming the key and what failed, and
   * whether the backup is damaged or the store could not be reached), and after a failure backs
   * the database up at once. Resolves when done, or soon after `signal` aborts; never throws.
   */
  async runDue(targets: readonly DrillTarget[], signal: AbortSignal): Promise<void> {
    if (this.#intervalMs <= 0) return;
    for (const t of targets) {
      if (signal.aborted) return;
      const due = this.#due.get(t.metrics) ?? { afterBackups: 0, notBefore: -Infinity };
      if (t.metrics.successfulBackups <= due.afterBackups) continue;
      if (this.#clock.now() < due.notBefore) continue;
      await withDbLabel(t.o.name, () => this.#drill(t, signal));
    }
  }

  async #drill(t: DrillTarget, signal: AbortSignal): Promise<void> {
    let r: DrillResult;
    try {
      r = await (t.drill ? t.drill(signal) : drillOnce(t.o, t.deps, signal));
    } catch (err) {
      if (signal.aborted) return; // stopped for shutdown: due again next time
      r = { outcome: "local", problem: oneLine(err), ms: 0 };
    }
    t.metrics.drilled(r);
    if (r.outcome === "verified") {
      this.#due.set(t.metrics, {
        afterBackups: -1,
        notBefore: this.#clock.now() + this.#intervalMs,
      });
      log.info("restore drill: {summary}", {
        event: "drill_verified",
        summary: describeDrill(r),
        key: r.key,
        bytes: r.bytes,
        ms: r.ms,
      });
      return;
    }
    this.#due.set(t.metrics, { afterBackups: t.metrics.successfulBackups, notBefore: -Infinity });
    log.error("restore drill: {summary}; taking a new backup now", {
      event: "drill_failed",
      summary: describeDrill(r),
      outcome: r.outcome,
      key: r.key,
      problem: r.problem,
      store: t.deps.store.location,
      ms: r.ms,
    });
    await t.backUpNow(signal);
  }
}

/**
 * `lifeboat verify`: one drill of each database of `dbs`, one at a time. Prints one line per
 * database on stdout (`NAME: verified KEY …`, or what failed and which kind of failure it was)
 * and resolves with 0 when every newest backup verified, else 1. Writes nothing to the stores.
 */
export async function verifyDatabases(
  dbs: readonly { name: string; path: string }[],
  o: Omit<DrillOptions, "db" | "name">,
  deps: DrillDeps,
): Promise<number> {
  let failed = 0;
  for (const d of dbs) {
    const r = await withDbLabel(d.name, () => drillOnce({ ...o, db: d.path, name: d.name }, deps));
    if (r.outcome !== "verified") failed++;
    await printOut(`${d.name}: ${describeDrill(r)}`);
  }
  return failed === 0 ? 0 : 1;
}

/** Writes one line to stdout, whole, with every known secret removed (see redact.ts). */
async function printOut(line: string): Promise<void> {
  const bytes = new TextEncoder().encode(redactLine(line) + "\n");
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}
