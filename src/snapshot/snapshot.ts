/** Consistent copies of a live SQLite database, and checks that a file is a sound database. */
import { dirname } from "node:path";
import { exactDuration } from "../duration.ts";
import { assertSqliteFile } from "../dbfile.ts";
import { operationError, TransientError } from "../errors.ts";
import { ensureFreeSpace, hashFile, isDiskFull, statIfExists } from "../fsutil.ts";
import { Phases } from "../phases.ts";
import type { WorkerRequest, WorkerResponse } from "./worker.ts";

/** What a finished snapshot file is: its checksum, size and page geometry. */
export interface SnapshotInfo {
  sha256: string;
  size: number;
  pageSize: number;
  pageCount: number;
}

/** A snapshot file, hashed, with its quick_check still running in a worker. */
export interface Snapshot extends SnapshotInfo {
  /**
   * Resolves once `quick_check` passed on the copy; rejects (exit 1, never retried) when the
   * database is damaged, or when the snapshot's signal aborts. Never an unhandled rejection.
   */
  checked: Promise<void>;
}

/** How long a snapshot waits for its read lock before it fails (the app holds the database). */
export const SNAPSHOT_LOCK_TIMEOUT_MS = 10_000;

/** Runs one request in a fresh worker; terminating it on abort. */
function runWorker<R extends WorkerRequest>(
  req: R,
  signal?: AbortSignal,
): Promise<WorkerResponse<R>> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
    const onAbort = () => {
      worker.terminate();
      reject(signal?.reason ?? new DOMException("aborted", "AbortError"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const finish = () => signal?.removeEventListener("abort", onAbort);
    worker.onmessage = (e: MessageEvent<WorkerResponse<R>>) => {
      finish();
      worker.terminate();
      resolve(e.data);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      finish();
      worker.terminate();
      reject(
        new TransientError(
          `snapshot worker failed: ${e.message}`,
          "This is a lifeboat bug: please report it with this line",
        ),
      );
    };
    worker.postMessage(req);
  });
}

/**
 * Copies `db` into `out` with SQLite's online backup API (off the main thread) and hashes the
 * copy; its `quick_check` runs on in a second worker (`checked`), so a backup can upload while
 * it runs and must await it before the object becomes visible. Abort `signal` to stop that
 * worker once it no longer matters. Throws (exit 1) if the copy fails, if the read lock is not
 * granted within SNAPSHOT_LOCK_TIMEOUT_MS, or, before writing anything, if the copy would leave
 * the disk nearly full; a config error if `db` is not a SQLite database. `out` may be left
 * behind on failure and is the caller's to remove. The copy is not fsynced: it is only read
 * back by this process (a crash discards it). `phases` gets the copy's, the hash's and the
 * check's durations ("snapshot", "hash", "check").
 */
export async function takeSnapshot(
  db: string,
  out: string,
  signal?: AbortSignal,
  phases = new Phases(),
): Promise<Snapshot> {
  await assertSqliteFile(db);
  // The copy is at most the database plus its WAL: never let it fill the app's disk.
  const size = async (p: string) => (await statIfExists(p))?.size ?? 0;
  await ensureFreeSpace(
    dirname(out),
    (await size(db)) + (await size(`${db}-wal`)),
    `a snapshot of ${db}`,
  );
  // Created private before SQLite writes a byte into it: backups can hold sensitive data.
  await Deno.writeFile(out, new Uint8Array(), { createNew: true, mode: 0o600 });
  const lockTimeoutMs = SNAPSHOT_LOCK_TIMEOUT_MS;
  const copied = await phases.time(
    "snapshot",
    () => runWorker({ op: "snapshot", db, out, lockTimeoutMs }, signal),
  );
  if (!copied.ok && copied.locked) {
    throw operationError(
      `snapshot of ${db} could not get a read lock within ${exactDuration(lockTimeoutMs)}: ` +
        "another connection keeps the database locked (PRAGMA locking_mode=EXCLUSIVE, or a " +
        "write transaction that does not end)",
      "Nothing was uploaded; let the app use locking_mode=NORMAL and short transactions",
    );
  }
  if (!copied.ok && isDiskFull(new Error(copied.error))) {
    throw operationError(
      `no disk space for the snapshot of ${db} in ${dirname(out)} (${copied.error})`,
      "Free disk space or give the machine a bigger disk; nothing was uploaded",
    );
  }
  if (!copied.ok) {
    throw operationError(
      `snapshot of ${db} failed: ${copied.error}`,
      "Nothing was uploaded; check the file with sqlite3 (PRAGMA integrity_check)",
    );
  }
  // quick_check on the copy, never the live database: a damaged database must not become the
  // newest backup, and checking the copy holds no lock the app could wait on. It runs in a
  // second worker while this thread hashes the copy and, after that, while the bytes upload.
  const checked = phases.time("check", () => checkDatabase(out, signal)).then((check) => {
    if (check !== "ok") {
      throw operationError(
        `${db} is damaged (quick_check: ${check.slice(0, 200)})`,
        "Nothing was uploaded; repair it (sqlite3 .recover) or restore a backup with --force",
      );
    }
  });
  checked.catch(() => {}); // the caller awaits it; an early failure must not go unhandled
  const hashed = await phases.time("hash", () => hashFile(out, signal));
  return { ...hashed, pageSize: copied.pageSize, pageCount: copied.pageCount, checked };
}

/**
 * Returns "ok" when `PRAGMA quick_check` (or `integrity_check`) passes on `path` (off the main
 * thread), else a description of what is wrong; throws only if `signal` aborts.
 */
export async function checkDatabase(
  path: string,
  signal?: AbortSignal,
  pragma: "quick_check" | "integrity_check" = "quick_check",
): Promise<string> {
  try {
    await assertSqliteFile(path);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const res = await runWorker({ op: "verify", path, pragma }, signal);
  if (!res.ok) return res.error;
  return res.check;
}
