/// <reference lib="deno.worker" />
/**
 * Runs SQLite work off the main thread: the online backup API and `quick_check` block the
 * thread that calls them for the whole copy, and the main thread must stay free for signals.
 */
import { backup, DatabaseSync } from "node:sqlite";
import { SQLITE_SIDE_FILES } from "../dbfile.ts";

/** A request to the worker. */
export type WorkerRequest =
  | { op: "snapshot"; db: string; out: string; lockTimeoutMs: number }
  | { op: "verify"; path: string; pragma: "quick_check" | "integrity_check" };

/** A request that failed: SQLite's message, and whether it was the read lock (snapshot). */
export type WorkerFailure = { ok: false; error: string; locked?: boolean };
/** The answer to a snapshot: the copy's page geometry. */
export type SnapshotAnswer = { ok: true; pageSize: number; pageCount: number } | WorkerFailure;
/** The answer to a verify: the check's verdict ("ok" or what is wrong). */
export type VerifyAnswer = { ok: true; check: string } | WorkerFailure;
/** The worker's answer to `R`. */
export type WorkerResponse<R extends WorkerRequest = WorkerRequest> = R extends { op: "snapshot" }
  ? SnapshotAnswer
  : VerifyAnswer;

function pageInfo(db: DatabaseSync): { pageSize: number; pageCount: number } {
  const pageSize = Number(
    (db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size,
  );
  const pageCount = Number(
    (db.prepare("PRAGMA page_count").get() as { page_count: number }).page_count,
  );
  return { pageSize, pageCount };
}

/** Opens `path` read-only, runs `fn`, closes it, and removes the empty side files it may leave. */
function withReadOnly<T>(path: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return fn(db);
  } finally {
    db.close();
    for (const suffix of SQLITE_SIDE_FILES) {
      try {
        Deno.removeSync(path + suffix);
      } catch { /* not there */ }
    }
  }
}

/** True when a rollback journal with content lies beside `db` (possibly hot: the app died). */
function hasJournal(db: string): boolean {
  try {
    return Deno.statSync(`${db}-journal`).size > 0;
  } catch {
    return false;
  }
}

async function snapshot(
  dbPath: string,
  out: string,
  lockTimeoutMs: number,
): Promise<SnapshotAnswer> {
  // A hot rollback journal (the app died mid-transaction) must be rolled back before anyone
  // reads: that takes a read-write connection (read-only fails with "readonly database").
  const src = new DatabaseSync(dbPath, { readOnly: !hasJournal(dbPath), timeout: lockTimeoutMs });
  try {
    // Take the read lock first, within SQLite's busy timeout: the backup API itself retries a
    // busy source forever (an app with locking_mode=EXCLUSIVE would hang it).
    try {
      src.exec("BEGIN");
      src.prepare("SELECT count(*) FROM sqlite_master").get();
    } catch (err) {
      const error = err instanceof Error ? err.message : String(err);
      if (/locked|busy/i.test(error)) return { ok: false, error, locked: true };
      throw err;
    }
    // rate -1: copy every page in one step, inside this one read transaction. A stepped backup
    // restarts whenever another connection writes and can starve on a busy database.
    await backup(src, out, { rate: -1 });
    src.exec("COMMIT");
  } finally {
    src.close();
  }
  // The caller checks the copy with quick_check (a second worker) while it hashes it.
  return { ok: true, ...withReadOnly(out, pageInfo) };
}

function verify(path: string, pragma: "quick_check" | "integrity_check"): VerifyAnswer {
  return withReadOnly(path, (db) => {
    const rows = db.prepare(`PRAGMA ${pragma}`).all() as Record<string, string>[];
    return { ok: true, check: rows.map((r) => r[pragma]).join("; ") };
  });
}

self.onmessage = async (e: MessageEvent<WorkerRequest>) => {
  const req = e.data;
  let res: WorkerResponse;
  try {
    res = req.op === "snapshot"
      ? await snapshot(req.db, req.out, req.lockTimeoutMs)
      : verify(req.path, req.pragma);
  } catch (err) {
    const error = err instanceof Error ? err.message : String(err);
    res = { ok: false, error };
  }
  self.postMessage(res);
  self.close();
};
