/**
 * One lifeboat process per database: an advisory lock on a file beside it. The kernel drops the
 * lock when its process dies, even by SIGKILL, so a crashed run never blocks the next one.
 */
import { basename, dirname, join } from "node:path";
import { configError, operationError } from "./errors.ts";

/** A held lock; release it once (releasing twice is harmless). */
export interface Lock {
  readonly path: string;
  release(): void;
}

/** Returns the lock file path for `db`. */
export function lockPathFor(db: string): string {
  return join(dirname(db), `.${basename(db)}.lifeboat.lock`);
}

/**
 * Takes the lock for `db` without waiting, creating its directory if needed. Throws (exit 1),
 * naming the holder's pid, when another lifeboat process holds it.
 */
export async function acquireLock(db: string): Promise<Lock> {
  const path = lockPathFor(db);
  try {
    await Deno.mkdir(dirname(path), { recursive: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory)) {
      throw e;
    }
    throw configError(
      `${dirname(db)} is not a directory`,
      "Point --db / LIFEBOAT_DB at a file in a directory",
    );
  }
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
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
    path,
    release() {
      if (released) return;
      released = true;
      file.close(); // closing drops the lock; the file stays, empty of meaning
    },
  };
}
