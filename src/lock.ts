/**
 * One lifeboat process per database: an advisory lock (flock) on the database file itself.
 *
 * Why the database's own inode and not a lock file beside it: a lock file can be deleted under
 * the holder, and the next lifeboat then locks a new file and runs beside it. The database
 * cannot be deleted without losing what lifeboat protects; a path, a symlink, a hard link or
 * `//./` all reach the same inode, so they all meet the same lock. Where it is missing, an empty
 * file is created to hold the lock (lifeboat, and SQLite, treat an empty file as no database),
 * and removed on release when it is still that empty file: a restore that fails or finds nothing
 * leaves no file behind, as before.
 *
 * Why this never blocks the app: SQLite locks with fcntl (POSIX) locks, which on Linux's local
 * file systems do not interact with flock (on NFS, which emulates flock with fcntl, they would:
 * SQLite's own documentation already warns against databases on NFS).
 *
 * Why the file is never closed while lifeboat's own SQLite connections may be open on it:
 * closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's too.
 * It is closed only on release (every command has finished) and, after a restore's rename, on
 * the inode that is no longer the database.
 *
 * The kernel drops a flock when its holder dies, even by SIGKILL: a crashed run never blocks the
 * next one. The holder's pid is told by the holder itself, on an abstract unix socket named after
 * the database's device and inode (Linux): nothing on disk to delete, gone with its process.
 * (/proc/locks would name it too, but Deno lets only --allow-all read /proc.)
 */
import { dirname } from "node:path";
import { configError, LifeboatError, operationError } from "./errors.ts";
import { statIfExists } from "./fsutil.ts";

/** A held lock; release it once (releasing twice is harmless). */
export interface Lock {
  release(): void;
}

/** How to take a lock. */
export interface LockOptions {
  /**
   * Create the database's directory and an empty database file when they are missing (restore,
   * watch). Without it a missing database is the caller's error to report: no lock is held.
   */
  create: boolean;
}

/** A held lock: the flocked descriptor, the pid beacon, and whether lifeboat made the file. */
interface Held {
  file: Deno.FsFile;
  beacon?: Deno.Listener;
  /** The empty file was created to hold the lock: removed on release if still empty. */
  created: boolean;
}

/** Each database locked by this process, by path. */
const held = new Map<string, Held>();

/** How often a lock is taken again when the path was replaced between open and flock. */
const REPLACED_RETRIES = 10;

/**
 * Takes the lock on the database `db` without waiting. Throws (exit 1), naming the holder's pid,
 * when another process holds it; a config error (exit 2) when `db` is not a regular file or its
 * file cannot be created or opened (read-only file system, permissions, a file where a directory
 * should be). With `create: false` a missing database returns a lock that holds nothing.
 */
export async function acquireLock(db: string, o: LockOptions = { create: true }): Promise<Lock> {
  for (let attempt = 0;; attempt++) {
    const opened = await openToLock(db, o.create);
    if (!opened) return { release() {} };
    const { file, created } = opened;
    let locked = false;
    try {
      locked = await file.tryLock(true);
      const st = await file.stat();
      if (!locked) {
        const pid = await askHolderPid(st);
        throw operationError(
          `another lifeboat process (pid ${pid ?? "unknown"}) is already working on ${db}`,
          "Run one lifeboat per database, or wait for the other one to finish",
        );
      }
      // Replaced (a restore's rename) or deleted between the open and the flock: the lock is on
      // an inode the path no longer names, which protects nothing. Take it again.
      if (sameFile(st, await statIfExists(db))) {
        held.set(db, { file, beacon: pidBeacon(st), created });
        return release(db);
      }
      if (attempt >= REPLACED_RETRIES) {
        throw operationError(
          `${db} keeps being replaced while lifeboat locks it`,
          "Something else renames files over the database: stop it, then run lifeboat again",
        );
      }
    } catch (e) {
      file.close();
      throw e;
    }
    file.close();
  }
}

/** The lock on `db`: releasing closes whichever descriptor holds it now (see replaceLocked). */
function release(db: string): Lock {
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      const h = held.get(db);
      held.delete(db);
      if (!h) return;
      h.beacon?.close();
      // Removed while still locked, so nobody can lock the name's old inode in between.
      if (h.created) removeIfStillEmpty(db, h.file);
      h.file.close();
    },
  };
}

/**
 * Runs `replace`, which renames `file` over the database `db`, keeping this process's lock on
 * `db` valid: `file` is locked before the rename, so the inode the path names afterwards is
 * locked from its first moment; the replaced inode's descriptor is closed after. Without a lock
 * on `db` in this process it only runs `replace`. Throws what `replace` throws (the lock on the
 * old file is then kept).
 */
export async function replaceLocked(
  db: string,
  file: string,
  replace: () => Promise<void>,
): Promise<void> {
  const old = held.get(db);
  if (!old) return await replace();
  const next = await Deno.open(file, { read: true, write: true });
  try {
    if (!(await next.tryLock(true))) throw new Error(`${file} is locked by another process`);
    await replace();
  } catch (e) {
    next.close();
    throw e;
  }
  old.beacon?.close();
  old.file.close();
  held.set(db, { file: next, beacon: pidBeacon(await next.stat()), created: false });
}

/**
 * Opens the database to lock it; creates it (and its directory) when missing and `create`.
 * Returns undefined for a missing database without `create`. Throws a config error (see
 * acquireLock) for what is not a regular file or cannot be opened for writing.
 */
async function openToLock(
  db: string,
  create: boolean,
): Promise<{ file: Deno.FsFile; created: boolean } | undefined> {
  const notAFile = () =>
    configError(`${db} is not a file`, "Point --db / LIFEBOAT_DB at the database file");
  try {
    const st = await statIfExists(db);
    // A directory, a FIFO (opening it would wait for a writer), a device: never a database.
    if (st && !st.isFile) throw notAFile();
    if (st) return { file: await openExisting(db), created: false };
    if (!create) return undefined;
    await Deno.mkdir(dirname(db), { recursive: true });
    const opts = { read: true, write: true, createNew: true, mode: 0o600 };
    return { file: await Deno.open(db, opts), created: true };
  } catch (e) {
    if (e instanceof LifeboatError || e instanceof Deno.errors.NotCapable) throw e;
    if (e instanceof Deno.errors.NotFound && !create) return undefined; // removed meanwhile
    const now = await statIfExists(db).catch(() => undefined);
    if (e instanceof Deno.errors.AlreadyExists && now?.isFile) {
      return await openToLock(db, create); // created by another process meanwhile
    }
    if (e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory) {
      throw configError(
        `${dirname(db)} is not a directory`,
        "Point --db / LIFEBOAT_DB at a file in a directory",
      );
    }
    if (e instanceof Deno.errors.IsADirectory) throw notAFile();
    throw unwritable(db, e);
  }
}

/**
 * Opens an existing database for writing (a read-only file system is then found here, before
 * anything starts); one its user may only read (a backup needs no more) is opened read-only:
 * a flock needs no write access.
 */
async function openExisting(db: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(db, { read: true, write: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.PermissionDenied)) throw e;
    return await Deno.open(db, { read: true });
  }
}

/** A config error for a database that cannot be opened for writing, or created. */
function unwritable(db: string, e: unknown): Error {
  const why = e instanceof Error ? e.message.replace(/: (open|mkdir) '.*$/, "") : String(e);
  const readOnly = /os error 30|read-only/i.test(why);
  return configError(
    `cannot open ${db} for writing to lock it (${why})`,
    readOnly
      ? "The database's directory is on a read-only file system: put LIFEBOAT_DB on a writable " +
        "volume or mount (e.g. /data), where the app can write too"
      : "lifeboat needs to write the database and in its directory: check their owner and " +
        "permissions (run as the app's user), or move LIFEBOAT_DB",
  );
}

/** Removes `db` if it is still the empty file `file`; never throws (it is only tidying up). */
function removeIfStillEmpty(db: string, file: Deno.FsFile): void {
  try {
    const path = Deno.statSync(db);
    if (path.size === 0 && sameFile(file.statSync(), path)) Deno.removeSync(db);
  } catch {
    // Gone already, or not ours to remove.
  }
}

/** True when `a` and `b` are the same file (device and inode). */
export function sameFile(a: Deno.FileInfo | undefined, b: Deno.FileInfo | undefined): boolean {
  return !!a && !!b && a.ino !== null && a.dev === b.dev && a.ino === b.ino;
}

/** The abstract unix socket (Linux) on which the holder of `st`'s lock tells its pid. */
function beaconName(st: Deno.FileInfo): string | undefined {
  return Deno.build.os === "linux" ? `\0lifeboat-lock:${st.dev}:${st.ino}` : undefined;
}

/**
 * Starts answering this process's pid on `st`'s beacon; undefined where there is none or it is
 * taken (the flock is the lock: the beacon only names its holder). It never keeps lifeboat alive.
 */
function pidBeacon(st: Deno.FileInfo): Deno.Listener | undefined {
  const path = beaconName(st);
  if (!path) return undefined;
  let listener: Deno.Listener;
  try {
    listener = Deno.listen({ transport: "unix", path });
  } catch {
    return undefined;
  }
  listener.unref();
  const pid = new TextEncoder().encode(`${Deno.pid}\n`);
  (async () => {
    for await (const conn of listener) {
      conn.write(pid).catch(() => {}).finally(() => conn.close());
    }
  })().catch(() => {}); // closed on release
  return listener;
}

/** Asks the holder of `st`'s lock for its pid; undefined when it does not answer within 2 s. */
async function askHolderPid(st: Deno.FileInfo): Promise<number | undefined> {
  const path = beaconName(st);
  if (!path) return undefined;
  let conn: Deno.Conn | undefined;
  const timer = setTimeout(() => conn?.close(), 2000);
  try {
    conn = await Deno.connect({ transport: "unix", path });
    const buf = new Uint8Array(32);
    const n = await conn.read(buf);
    const text = new TextDecoder().decode(buf.subarray(0, n ?? 0));
    return /^\d+\n$/.test(text) ? Number(text) : undefined;
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed by the timer */ }
  }
}
