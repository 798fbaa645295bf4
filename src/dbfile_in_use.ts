/**
 * Whether an app has the database open, asked of SQLite itself (node:sqlite: loaded only where a
 * database may be replaced, never by `watch`'s long-lived process unless it installs a restore).
 */
import { DatabaseSync } from "node:sqlite";
import { databaseState } from "./dbfile.ts";
import { operationError } from "./errors.ts";

/**
 * True when another connection has the database open: an app in WAL mode holds a shared lock
 * for as long as it has the file open, so an exclusive lock taken without waiting fails. (An app
 * in rollback-journal mode holds locks only inside its transactions: between them it cannot be
 * seen.) Never throws; a file SQLite cannot open counts as not in use.
 */
export function inUseByOthers(db: string): boolean {
  let conn: DatabaseSync | undefined;
  try {
    conn = new DatabaseSync(db, { timeout: 0 });
    conn.exec("PRAGMA locking_mode=EXCLUSIVE");
    conn.exec("BEGIN EXCLUSIVE");
    conn.exec("COMMIT");
    return false;
  } catch (err) {
    return err instanceof Error && /locked|busy/i.test(err.message);
  } finally {
    conn?.close();
  }
}

/** Throws an operation error (exit 1) when another process has `db` open (see inUseByOthers). */
export function assertNotInUse(db: string): void {
  if (!inUseByOthers(db)) return;
  throw operationError(
    `${db} is open in another process (an app is using it): replacing it now would drop ` +
      "that process's commits",
    "Stop the app first (lifeboat watch restores before it starts the app); nothing was changed",
  );
}

/**
 * Decides what a restore does with `db`: "keep" an existing database (unless `force`), else
 * "replace" it. An empty file counts as absent (the store decides); a directory or a non-SQLite
 * file is a config error (exit 2); a database another process has open is never replaced
 * under it (exit 1).
 */
export async function restoreTarget(db: string, force: boolean): Promise<"keep" | "replace"> {
  const state = await databaseState(db);
  if (state === "database" && !force) return "keep";
  if (state === "database") assertNotInUse(db);
  return "replace";
}
