/**
 * The database file as lifeboat finds it on disk: its real path (symlinks resolved once), a name
 * short enough for the files lifeboat puts beside it, what sits at the path (nothing, an empty
 * file, a SQLite database, or something lifeboat must not touch), which processes have it open
 * for writing.
 */
import { basename, dirname, join, resolve } from "node:path";
import { configError, operationError } from "./errors.ts";
import { statIfExists } from "./fsutil.ts";
import { assertSqliteFile } from "./snapshot/snapshot.ts";

/** The longest file name most Linux file systems allow, in bytes. */
const NAME_MAX = 255;
/** The most lifeboat adds to the database's name: `.NAME.lifeboat-PID-XXXXXXXX.tmp-journal`. */
const LONGEST_ADDITION = ".".length + ".lifeboat-".length + 7 + 1 + 8 + ".tmp-journal".length;
/** The longest database file name lifeboat accepts, in bytes. */
export const MAX_DB_NAME_BYTES = NAME_MAX - LONGEST_ADDITION;

/** Returns `db` if its file name leaves room for lifeboat's files beside it; else a config error. */
export function checkNameLength(db: string): string {
  const bytes = new TextEncoder().encode(basename(db)).length;
  if (bytes > MAX_DB_NAME_BYTES) {
    throw configError(
      `the database file name ${JSON.stringify(basename(db).slice(0, 40) + "…")} is ${bytes} ` +
        `bytes long: lifeboat's temporary and lock files beside it would exceed the ` +
        `${NAME_MAX}-byte file name limit`,
      `Use a database file name of at most ${MAX_DB_NAME_BYTES} bytes (--db / LIFEBOAT_DB)`,
    );
  }
  return db;
}

/**
 * Returns the real path of `db`: symlinks followed (even a dangling one, to where it points) and
 * its directory resolved, so that a restore replaces the link's target and the lock is taken on
 * the real file. Falls back to `db` itself when nothing can be resolved; never throws.
 */
export async function realDatabasePath(db: string): Promise<string> {
  try {
    return await Deno.realPath(db);
  } catch {
    // Missing (perhaps behind a dangling link): follow links by hand below.
  }
  let path = db;
  for (let hops = 0; hops < 40; hops++) {
    try {
      path = resolve(dirname(path), await Deno.readLink(path));
    } catch {
      break; // not a link (or gone): this is the file
    }
  }
  try {
    return join(await Deno.realPath(dirname(path)), basename(path));
  } catch {
    return path;
  }
}

/** What lies at the database path. */
export type DatabaseState = "absent" | "empty" | "database";

/**
 * Says whether `db` is absent, an empty file (which counts as absent: SQLite creates it on open)
 * or a SQLite database. Throws a config error (exit 2) for a directory or a file that is not a
 * SQLite database: lifeboat neither skips nor replaces what it does not understand.
 */
export async function databaseState(db: string): Promise<DatabaseState> {
  const st = await statIfExists(db);
  if (!st) return "absent";
  if (st.isFile && st.size === 0) return "empty";
  await assertSqliteFile(db);
  return "database";
}

/**
 * Returns the pids of other processes holding `db` (or its -wal or -journal) open for writing,
 * read from /proc. Processes lifeboat may not inspect (other users, no /proc) are not seen;
 * never throws.
 */
export async function writersOf(db: string): Promise<number[]> {
  const targets = new Set([db, `${db}-wal`, `${db}-journal`]);
  const pids: number[] = [];
  try {
    for await (const proc of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(proc.name) || Number(proc.name) === Deno.pid) continue;
      if (await holdsForWriting(proc.name, targets)) pids.push(Number(proc.name));
    }
  } catch {
    // No /proc: nothing can be said.
  }
  return pids;
}

async function holdsForWriting(pid: string, targets: Set<string>): Promise<boolean> {
  try {
    for await (const fd of Deno.readDir(`/proc/${pid}/fd`)) {
      const target = await Deno.readLink(`/proc/${pid}/fd/${fd.name}`).catch(() => "");
      if (!targets.has(target)) continue;
      const info = await Deno.readTextFile(`/proc/${pid}/fdinfo/${fd.name}`).catch(() => "");
      const flags = parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8);
      if ((flags & 0o3) !== 0) return true; // O_WRONLY or O_RDWR
    }
  } catch {
    // Gone, or not ours to inspect.
  }
  return false;
}

/** Throws an operation error (exit 1) naming them when other processes have `db` open for writing. */
export async function assertNoWriters(db: string): Promise<void> {
  const pids = await writersOf(db);
  if (pids.length === 0) return;
  throw operationError(
    `${db} is open for writing by another process (pid ${pids.join(", ")}): replacing it now ` +
      "would drop that process's commits",
    "Stop the app first (lifeboat watch restores before it starts the app); nothing was changed",
  );
}

/**
 * Decides what a restore does with `db`: "keep" an existing database (unless `force`), else
 * "replace" it. An empty file counts as absent (the store decides); a directory or a non-SQLite
 * file is a config error (exit 2); a file another process has open for writing is never
 * replaced under it (exit 1).
 */
export async function restoreTarget(db: string, force: boolean): Promise<"keep" | "replace"> {
  const state = await databaseState(db);
  if (state === "database" && !force) return "keep";
  if (state !== "absent") await assertNoWriters(db);
  return "replace";
}
