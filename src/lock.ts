/**
 * One lifeboat process per database: an advisory lock on a file beside it. The kernel drops the
 * lock when its process dies, even by SIGKILL, so a crashed run never blocks the next one.
 */
import { basename, dirname, join } from "node:path";
import { configError, operationError } from "./errors.ts";

/** A held lock; release it once (releasing twice is harmless). */
export interface Lock {
  release(): void;
}

/** A config error for a lock file that cannot be created: the database's directory is not writable. */
function unwritable(path: string, e: unknown): Error {
  const why = e instanceof Error ? e.message.replace(/: (open|mkdir) '.*$/, "") : String(e);
  const readOnly = /os error 30|read-only/i.test(why);
  return configError(
    `cannot create lifeboat's lock file ${path} (${why})`,
    readOnly
      ? "The database's directory is on a read-only file system: put LIFEBOAT_DB on a writable " +
        "volume or mount (e.g. /data), where the app can write too"
      : "lifeboat needs to write in the database's directory: check its owner and permissions " +
        "(run as the app's user), or move LIFEBOAT_DB",
  );
}

/** Returns the lock file path for `db`. */
export function lockPathFor(db: string): string {
  return join(dirname(db), `.${basename(db)}.lifeboat.lock`);
}

/**
 * Takes the lock for `db` without waiting, creating its directory if needed. Throws (exit 1),
 * naming the holder's pid, when another lifeboat process holds it; a config error (exit 2) when
 * the directory cannot be written (read-only file system, permissions).
 */
export async function acquireLock(db: string): Promise<Lock> {
  const path = lockPathFor(db);
  let file: Deno.FsFile;
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
    file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory) {
      throw configError(
        `${dirname(db)} is not a directory`,
        "Point --db / LIFEBOAT_DB at a file in a directory",
      );
    }
    throw unwritable(path, e);
  }
  if (!(await file.tryLock(true))) {
    const holder = (await Deno.readTextFile(path).catch(() => "")).trim() || "unknown";
    file.close();
    throw operationError(
      `another lifeboat process (pid ${holder}) is already working on ${db}`,
      "Run one lifeboat per database, or wait for the other one to finish",
    );
  }
  await file.truncate(0);
  await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      file.close(); // closing drops the lock; the file stays, empty of meaning
    },
  };
}
