/**
 * Putting a verified download in place of the database: the one step of a restore that must run
 * in the process holding the database's lock (lock.ts), so `watch` runs it itself.
 */
import { basename, dirname } from "node:path";
import { SQLITE_SIDE_FILES } from "../dbfile.ts";
import { fsyncDir, removeIfExists, statIfExists } from "../fsutil.ts";
import { replaceLocked } from "../lock.ts";

/**
 * Atomically replaces `db` with the verified file `tmp` (same directory), first removing any
 * stale side file (`-wal`, `-shm`, `-journal`) that would otherwise be replayed onto the restored database. The result
 * has mode 0600, or the replaced database's mode. Throws (exit 1), changing nothing, when
 * another process has `db` open.
 */
export async function installDatabase(tmp: string, db: string): Promise<void> {
  if (dirname(tmp) !== dirname(db)) throw new Error(`${basename(tmp)} is not beside ${db}`);
  // Keep the mode of a database being replaced (--force); a new one stays private (0600).
  const old = await statIfExists(db);
  // An app that opened it during the download (SQLite, loaded only then: watch installs too).
  if (old?.size) (await import("../dbfile_in_use.ts")).assertNotInUse(db);
  if (old?.mode != null) await Deno.chmod(tmp, old.mode & 0o777);
  for (const side of SQLITE_SIDE_FILES) await removeIfExists(db + side);
  // Locked before the rename: the new inode at `db` is lifeboat's from its first moment.
  await replaceLocked(db, tmp, () => Deno.rename(tmp, db));
  await fsyncDir(dirname(db));
}
