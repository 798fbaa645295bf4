/**
 * Temporary files live beside the database (same file system: atomic rename, no /tmp size
 * surprise), named so that a crashed run's leftovers are recognised and removed later.
 */
import { basename, dirname, join } from "node:path";
import { SQLITE_SIDE_FILES } from "./dbfile.ts";
import { randomSuffix, removeIfExists } from "./fsutil.ts";

const MARK = ".lifeboat-";
/** A temporary file's name after `MARK`: the pid, the random part, and perhaps a side file. */
const TEMP_NAME = new RegExp(String.raw`^(\d+)-[0-9a-f]+\.tmp(${SQLITE_SIDE_FILES.join("|")})?$`);

/** Returns a fresh temporary path beside `db`, recognisable by `cleanStaleTemps`. */
export function tempPathBeside(db: string): string {
  return join(dirname(db), `.${basename(db)}${MARK}${Deno.pid}-${randomSuffix()}.tmp`);
}

/** True when `path` is named as `tempPathBeside(db)` names one (of any process); never throws. */
export function isTempOf(db: string, path: string): boolean {
  const prefix = `.${basename(db)}${MARK}`;
  return dirname(path) === dirname(db) && basename(path).startsWith(prefix) &&
    TEMP_NAME.test(basename(path).slice(prefix.length));
}

/** Removes a temporary file and the SQLite sidecars it may have grown; never throws. */
export async function removeTemp(path: string): Promise<void> {
  for (const p of [path, ...SQLITE_SIDE_FILES.map((side) => path + side)]) {
    await removeIfExists(p).catch(() => {});
  }
}

/**
 * Removes temporary files of `db` left by other lifeboat runs; returns their names. Call it only
 * while holding the database's lock (`lock.ts`): then no other lifeboat can be using them, and
 * a reused pid cannot keep a crashed run's file alive. Never throws.
 */
export async function cleanStaleTemps(db: string): Promise<string[]> {
  const prefix = `.${basename(db)}${MARK}`;
  const removed: string[] = [];
  try {
    for await (const e of Deno.readDir(dirname(db))) {
      if (!e.isFile || !e.name.startsWith(prefix)) continue;
      const m = TEMP_NAME.exec(e.name.slice(prefix.length));
      if (!m || Number(m[1]) === Deno.pid) continue;
      await removeIfExists(join(dirname(db), e.name));
      removed.push(e.name);
    }
  } catch {
    // Directory missing or unreadable: nothing to clean.
  }
  return removed;
}
