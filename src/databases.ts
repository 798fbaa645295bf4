/**
 * The list of databases one lifeboat process looks after (`--db` repeated, or `LIFEBOAT_DB` with
 * commas), each with its store name: given as `PATH=NAME`, or derived from the file name — the
 * same whether the database runs alone or with others, so that adding, removing or rolling back
 * databases never moves one's backups (its store layout is `backups/TIER/NAME/`, keys.ts).
 */
import { basename, resolve } from "node:path";
import type { DatabaseSpec } from "./store/settings.ts";

export type { DatabaseSpec };
import { checkNameLength, realDatabasePath } from "./dbfile.ts";
import { configError } from "./errors.ts";
import { isStoreName } from "./store/keys.ts";

/** Separates the paths in LIFEBOAT_DB; a path containing it is given with repeated `--db`. */
export const DB_SEPARATOR = ",";

/**
 * Splits `PATH=NAME` on its last `=` when the part after it looks like a name (letters, digits,
 * `._-`) and the part before it is not empty; otherwise the whole entry is a path. Never throws.
 */
export function splitMapping(entry: string): { path: string; name?: string } {
  const at = entry.lastIndexOf("=");
  const name = entry.slice(at + 1);
  if (at <= 0 || !/^[A-Za-z0-9._-]+$/.test(name)) return { path: entry };
  return { path: entry.slice(0, at), name };
}

/**
 * The name derived from a database file: its file name without the last extension, with every
 * character a store name cannot hold replaced by `_` (and at most 64 of them). Never throws;
 * the same file name always gives the same name.
 */
export function derivedName(path: string): string {
  const file = basename(path);
  const dot = file.lastIndexOf(".");
  const stem = dot > 0 ? file.slice(0, dot) : file;
  return stem.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\./, "_").slice(0, 64) || "db";
}

/**
 * Returns the database entries of `--db` (given once or repeated) or else of LIFEBOAT_DB (split
 * on commas, entries trimmed). Throws a config error (exit 2) when none is given or an entry of
 * LIFEBOAT_DB is empty.
 */
export function databaseEntries(flag: string | string[] | undefined, env?: string): string[] {
  const flags = flag === undefined ? [] : Array.isArray(flag) ? flag : [flag];
  if (flags.length > 0 && flags.some((f) => f.trim() !== "")) {
    if (flags.some((f) => f.trim() === "")) {
      throw configError("--db is empty", "Pass --db PATH, once per database");
    }
    return flags;
  }
  if (flags.length > 0 || env === undefined || env.trim() === "") {
    throw configError("no database given", "Pass --db PATH or set LIFEBOAT_DB");
  }
  const entries = env.split(DB_SEPARATOR).map((e) => e.trim());
  if (entries.some((e) => e === "")) {
    throw configError(
      `LIFEBOAT_DB ${JSON.stringify(env)} has an empty entry`,
      "Separate database paths with single commas (LIFEBOAT_DB=/data/a.db,/data/b.db), no " +
        "trailing comma; give a path that contains a comma with repeated --db flags",
    );
  }
  return entries;
}

/**
 * Builds the databases of one run from `entries` (see `databaseEntries`): each one's absolute
 * path and store name. Throws a config error (exit 2) naming the fix for a name lifeboat cannot
 * use. Two databases that would share a name are `assertDistinctNames`'s to report, after
 * `resolveDatabases` has told the same file given twice from a name clash.
 */
export function planDatabases(entries: string[], cwd = Deno.cwd()): DatabaseSpec[] {
  return entries.map((entry): DatabaseSpec => {
    const { path, name } = splitMapping(entry);
    const abs = resolve(cwd, path);
    if (name !== undefined && !isStoreName(name)) {
      throw configError(
        `the name given to ${abs} (${JSON.stringify(name)}) cannot name it in the store`,
        `Give one with --db ${path}=NAME: 1–64 letters, digits, '.', '_' or '-', not starting ` +
          "with '.'",
      );
    }
    return { path: abs, name: name ?? derivedName(abs), explicit: name !== undefined };
  });
}

/**
 * Returns `specs` unless two would be stored under the same name; then throws a config error
 * (exit 2) naming both databases and the fix.
 */
export function assertDistinctNames(specs: DatabaseSpec[]): DatabaseSpec[] {
  for (let i = 0; i < specs.length; i++) {
    for (let j = 0; j < i; j++) {
      if (specs[i].name === specs[j].name) {
        throw configError(
          `${specs[j].path} and ${specs[i].path} would both be stored as ` +
            `${JSON.stringify(specs[i].name)}`,
          `Name one of them: --db ${specs[i].path}=OTHER_NAME`,
        );
      }
    }
  }
  return specs;
}

/**
 * Resolves each database's real path once (symlinks followed, as for one database), checks its
 * name length, then that no two share a name (`assertDistinctNames`). Throws a config error
 * (exit 2) when two entries are the same file: the same device and inode (a hard link, a
 * symlink, `//./`), or for a file not there yet the same real path; this is checked first, so
 * the same file given twice is never reported as a name clash.
 */
export async function resolveDatabases(specs: DatabaseSpec[]): Promise<DatabaseSpec[]> {
  const out: DatabaseSpec[] = [];
  const ids: string[] = [];
  for (const s of specs) {
    const path = checkNameLength(await realDatabasePath(s.path));
    const st = await Deno.stat(path).catch(() => undefined);
    const id = st?.ino != null ? `inode ${st.dev}:${st.ino}` : `path ${path}`;
    const twin = ids.indexOf(id);
    if (twin >= 0) {
      throw configError(
        `${out[twin].path} is given twice (as ${out[twin].name} and as ${s.name}` +
          `${path === out[twin].path ? "" : `, through ${path}`})`,
        "Give each database once: --db PATH, or PATH=NAME to choose its store name",
      );
    }
    ids.push(id);
    out.push({ ...s, path });
  }
  return assertDistinctNames(out);
}
