/** `lifeboat restore`: put the newest verified backup in place, or confirm there is none. */
import { dirname } from "node:path";
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { LifeboatError, oneLine, operationError } from "../errors.ts";
import { restoreTarget } from "../dbfile.ts";
import { isDiskFull } from "../fsutil.ts";
import { logger } from "../log.ts";
import { installDatabase, verifyDownload } from "../snapshot/install.ts";
import { retry } from "../retry.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";

const log = logger("restore");

function sizeOf(c: BackupInfo): string {
  return c.size === undefined ? "size unknown" : `${c.size} bytes`;
}

/** How many of the newest backups restore will try before giving up. */
export const MAX_CANDIDATES = 3;

/** What a restore needs to know. */
export interface RestoreOptions {
  db: string;
  force: boolean;
  /** Attempts at each store request before the store counts as unreachable. */
  attempts: number;
  retryBaseMs: number;
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
      baseMs: o.retryBaseMs,
      clock: deps.clock,
      onRetry: (err, attempt, delay) =>
        log.warn("{what} failed (attempt {attempt}), retrying in {delay}: {error}", {
          event: "retry",
          what,
          attempt,
          delay: formatDuration(delay),
          error: oneLine(err),
        }),
    });

  // The app may create the database on a fresh start: make sure its directory exists.
  await Deno.mkdir(dirname(o.db), { recursive: true });
  let candidates: BackupInfo[];
  try {
    candidates = await withRetry("listing backups", () => deps.store.newest(MAX_CANDIDATES));
  } catch (err) {
    if (err instanceof LifeboatError) throw err;
    throw operationError(
      `cannot list backups in ${deps.store.location}: ${oneLine(err)}`,
      "Check the URL, credentials and network; nothing was restored and the app must not start",
      err,
    );
  }
  if (candidates.length === 0) {
    log.info("no backup found in {store}, starting fresh", {
      event: "restore_fresh",
      store: deps.store.location,
      ms: elapsed(),
    });
    return { outcome: "fresh", ms: elapsed() };
  }

  const problems: string[] = [];
  for (const c of candidates) {
    const tmp = tempPathBeside(o.db);
    try {
      const got = await withRetry(`downloading ${c.key}`, async () => {
        await removeTemp(tmp);
        const opened = await deps.store.open(c.key);
        return await verifyDownload(opened, tmp);
      });
      if (!got.ok) {
        problems.push(`${c.key}: ${got.problem}`);
        log.error("backup {key} failed verification ({problem}); trying an older one", {
          event: "restore_rejected",
          key: c.key,
          problem: got.problem,
        });
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
      return { outcome: "restored", key: c.key, bytes: got.size, sha256: got.sha256, ms };
    } catch (err) {
      if (err instanceof LifeboatError) throw err;
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
