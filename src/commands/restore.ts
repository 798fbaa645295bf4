/** `lifeboat restore`: put the newest verified backup in place, or confirm there is none. */
import { dirname } from "node:path";
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { isFinal, oneLine, operationError } from "../errors.ts";
import { restoreTarget } from "../dbfile.ts";
import { isDiskFull } from "../fsutil.ts";
import { logger } from "../log.ts";
import { installDatabase, type RestoreCheck, type Verified } from "../snapshot/install.ts";
import { logRetries, retry } from "../retry.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { readVerified } from "./readback.ts";

const log = logger("restore");

function sizeOf(c: BackupInfo): string {
  return c.size === undefined ? "size unknown" : `${c.size} bytes`;
}

/** How many of the newest backups restore will try before giving up. */
export const MAX_CANDIDATES = 3;
/** Downloads of one backup that fail verification before restore moves on to an older one. */
export const VERIFY_ATTEMPTS = 3;
/** The first wait between two attempts at a store request (it doubles, up to 8 s). */
export const RETRY_BASE_MS = 500;
/** A newest backup ordered this far ahead of the local clock is reported (a clock is off). */
export const FUTURE_WARN_MS = 5 * 60_000;

/** What a restore needs to know. */
export interface RestoreOptions {
  db: string;
  force: boolean;
  /** Attempts at each store request before the store counts as unreachable
   * (LIFEBOAT_RESTORE_ATTEMPTS). */
  attempts: number;
  /** The first wait between attempts; RETRY_BASE_MS unless a test needs it shorter. */
  retryBaseMs?: number;
  /** Start empty even when the store's marker says backups existed (`--allow-empty`). */
  allowEmpty?: boolean;
  /** The SQLite check after the SHA-256 matched (LIFEBOAT_RESTORE_CHECK; default "auto"). */
  restoreCheck?: RestoreCheck;
}

/** What a restore touches outside itself. */
export interface RestoreDeps {
  store: Store;
  clock: Clock;
}

/** How a restore ended; every outcome here means the app may start. */
export interface RestoreResult {
  outcome: "exists" | "fresh" | "restored";
  key?: string;
  bytes?: number;
  /** SHA-256 of the restored file, so an idle app's first backup can be skipped. */
  sha256?: string;
  ms: number;
  /** The store's newest backup when restore looked (null: none); undefined when it did not look. */
  newestKey?: string | null;
  /** How far the newest backup's order time is ahead of the local clock (0 when it is not). */
  futureMs?: number;
}

/**
 * Restores the newest backup that passes verification (SHA-256 and `quick_check`) into `db`
 * by atomic rename. Returns only when the database exists or the store confirmed it holds no
 * backup; throws (exit 1) when the store cannot be read or no candidate verifies — the target
 * path is then left as it was.
 */
export async function restoreDatabase(
  o: RestoreOptions,
  deps: RestoreDeps,
): Promise<RestoreResult> {
  const started = deps.clock.now();
  const elapsed = () => deps.clock.now() - started;
  if ((await restoreTarget(o.db, o.force)) === "keep") {
    log.info("database {db} exists, restore skipped", { event: "restore_skipped", db: o.db });
    return { outcome: "exists", ms: elapsed() };
  }
  const withRetry = <T>(what: string, fn: () => Promise<T>) =>
    retry(fn, {
      retryable: (err) => !isDiskFull(err),
      attempts: o.attempts,
      baseMs: o.retryBaseMs ?? RETRY_BASE_MS,
      clock: deps.clock,
      onRetry: logRetries(log, what),
    });

  // The app may create the database on a fresh start: make sure its directory exists.
  await Deno.mkdir(dirname(o.db), { recursive: true });
  const unreadable = (what: string) => (err: unknown): never => {
    if (isFinal(err)) throw err;
    throw operationError(
      `cannot ${what} in ${deps.store.location}: ${oneLine(err)}`,
      "Check the URL, credentials and network; nothing was restored and the app must not start",
      err,
    );
  };
  const candidates: BackupInfo[] = await withRetry(
    "listing backups",
    () => deps.store.newest(MAX_CANDIDATES),
  ).catch(unreadable("list backups"));
  if (candidates.length === 0) {
    const marker = await withRetry("reading the store's marker", () => deps.store.marker())
      .catch(unreadable("read the store's marker"));
    if (marker && !o.allowEmpty) {
      throw operationError(
        `${deps.store.location} holds no backup, but its marker says lifeboat stored the first ` +
          `one on ${marker.createdAt} (machine ${marker.machine}): backups were deleted or expired`,
        "Nothing was restored and the app must not start. Recover the objects (versioning, " +
          "lifecycle rules) or, to start empty on purpose, pass --allow-empty or set " +
          "LIFEBOAT_ALLOW_EMPTY=1",
      );
    }
    const level = marker ? "warn" : "info";
    log[level](
      marker
        ? "no backup found in {store}: its backups are gone; starting empty (--allow-empty)"
        : "no backup found in {store}, starting fresh",
      {
        event: marker ? "restore_fresh_allowed" : "restore_fresh",
        store: deps.store.location,
        ms: elapsed(),
      },
    );
    return { outcome: "fresh", ms: elapsed(), newestKey: null, futureMs: 0 };
  }
  const newestKey = candidates[0].key;
  const futureMs = Math.max(0, candidates[0].createdAt.getTime() - deps.clock.now());
  if (futureMs > FUTURE_WARN_MS) {
    log.warn(
      "the newest backup {key} is dated {ahead} ahead of this machine's clock: a clock is off " +
        "(here or where it was written). New backups still sort after it; check NTP",
      { event: "backup_in_future", key: newestKey, ahead: formatDuration(futureMs), ms: futureMs },
    );
  }

  const problems: string[] = [];
  for (const c of candidates) {
    const tmp = tempPathBeside(o.db);
    try {
      let got: Verified | undefined;
      for (let attempt = 1; attempt <= VERIFY_ATTEMPTS && !got?.ok; attempt++) {
        got = await withRetry(
          `downloading ${c.key}`,
          () => readVerified(deps.store, c.key, tmp, { mode: "install", check: o.restoreCheck }),
        );
        if (!got.ok && attempt < VERIFY_ATTEMPTS) {
          log.warn("backup {key} failed verification ({problem}); downloading it again", {
            event: "restore_reread",
            key: c.key,
            problem: got.problem,
            attempt,
          });
        }
      }
      if (!got?.ok) {
        const problem = got?.problem ?? "not verified";
        problems.push(`${c.key}: ${problem}`);
        log.error(
          "skipping backup {key}: it failed verification {attempts} times ({problem}); " +
            "trying an older one",
          { event: "restore_rejected", key: c.key, problem, attempts: VERIFY_ATTEMPTS },
        );
        continue;
      }
      await installDatabase(tmp, o.db);
      const ms = elapsed();
      log.info("restored {key} from {store}: {bytes} bytes in {duration}", {
        event: "restore_finished",
        key: c.key,
        store: deps.store.location,
        bytes: got.size,
        ms,
        duration: formatDuration(ms),
      });
      return {
        outcome: "restored",
        key: c.key,
        bytes: got.size,
        sha256: got.sha256,
        ms,
        newestKey,
        futureMs,
      };
    } catch (err) {
      if (isFinal(err)) throw err;
      if (isDiskFull(err)) {
        throw operationError(
          `disk full while restoring ${c.key} (${sizeOf(c)}) into ${dirname(o.db)}`,
          "Free disk space or give the machine a bigger disk; the database was not changed",
          err,
        );
      }
      throw operationError(
        `restore of ${c.key} failed: ${oneLine(err)}`,
        "Check the network, credentials and free disk space; the database was not changed",
        err,
      );
    } finally {
      await removeTemp(tmp);
    }
  }
  throw operationError(
    `none of the ${candidates.length} newest backups passed verification (${problems.join("; ")})`,
    "Inspect the store; restore an older backup by hand if needed. The database was not changed",
  );
}
