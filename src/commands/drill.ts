/**
 * Restore drills: the newest backup of a database read back from the store and verified exactly
 * as restore would verify it (size and SHA-256 end to end, then the SQLite check), without
 * installing it. `watch` runs them (`drill_schedule.ts`: after the process's first successful
 * backup, then every LIFEBOAT_DRILL_INTERVAL); `lifeboat verify` runs one on demand
 * (`verifyDatabases`).
 */
import type { Clock } from "../clock.ts";
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import type { DrillRecord } from "../metrics.ts";
import { redactLine } from "../redact.ts";
import { logRetries, retry } from "../retry.ts";
import type { RestoreCheck, Verified } from "../snapshot/install.ts";
import { readDbHistory } from "../store/history.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { fromStore, readVerified } from "./readback.ts";
import { RETRY_BASE_MS, VERIFY_ATTEMPTS } from "./restore.ts";
import { describeDrill } from "./drill_schedule.ts";
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
