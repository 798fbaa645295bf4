/**
 * The database file as lifeboat finds it on disk: its real path (symlinks resolved once), a name
 * short enough for the files lifeboat puts beside it, what sits at the path (nothing, an empty
 * file, a SQLite database, or something lifeboat must not touch), and whether an app has it open.
 */
import { basename, dirname, join, resolve } from "node:path";
import { configError } from "./errors.ts";
import { statIfExists } from "./fsutil.ts";

/** The files SQLite keeps beside a database `NAME` (as `NAME-wal`, …): the one list of them. */
export const SQLITE_SIDE_FILES = ["-wal", "-shm", "-journal"] as const;

/** The longest file name most Linux file systems allow, in bytes. */
const NAME_MAX = 255;
/** The most lifeboat adds to the database's name: `.NAME.lifeboat-PID-XXXXXXXX.tmp-journal`. */
const LONGEST_ADDITION = ".".length + ".lifeboat-".length + 7 + 1 + 8 + ".tmp".length +
  Math.max(...SQLITE_SIDE_FILES.map((s) => s.length));
/** The longest database file name lifeboat accepts, in bytes. */
export const MAX_DB_NAME_BYTES = NAME_MAX - LONGEST_ADDITION;

/** Returns `db` if its file name leaves room for lifeboat's files beside it; else a config error. */
export function checkNameLength(db: string): string {
  const bytes = new TextEncoder().encode(basename(db)).length;
  if (bytes > MAX_DB_NAME_BYTES) {
    throw configError(
      `the database file name ${JSON.stringify(basename(db).slice(0, 40) + "…")} is ${bytes} ` +
        `bytes long: lifeboat's temporary files beside it would exceed the ` +
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

const HEADER = new TextEncoder().encode("SQLite format 3\0");

/** Reads the first 100 bytes of a file, or fewer if it is shorter. */
async function readHeader(path: string): Promise<Uint8Array> {
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(100);
  let off = 0;
  while (off < buf.length) {
    const n = await f.read(buf.subarray(off));
    if (n === null) break;
    off += n;
  }
  return buf.subarray(0, off);
}

/** Returns the header if `path` starts like a SQLite database; throws a config error otherwise. */
export async function assertSqliteFile(path: string): Promise<Uint8Array> {
  let header: Uint8Array;
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) {
      throw configError(`${path} is not a file`, "Point --db / LIFEBOAT_DB at the database file");
    }
    header = await readHeader(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
      throw configError(
        `database ${path} does not exist`,
        "Check --db / LIFEBOAT_DB (restore creates it; backup needs it)",
      );
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw configError(`cannot read ${path}: permission denied`, "Run as a user that can read it");
    }
    throw e;
  }
  if (header.length < 100 || !HEADER.every((b, i) => header[i] === b)) {
    throw configError(
      `${path} is not a SQLite database`,
      "Point --db / LIFEBOAT_DB at the SQLite database file",
    );
  }
  return header;
}

/** True when the database at `path` is in WAL mode (header bytes 18–19 are 2). */
export async function isWalMode(path: string): Promise<boolean> {
  const h = await readHeader(path);
  return h.length >= 20 && h[18] === 2 && h[19] === 2;
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
