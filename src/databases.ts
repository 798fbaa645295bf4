/**
 * The list of databases one lifeboat process looks after (`--db` repeated, or `LIFEBOAT_DB` with
 * commas), each with the name of its own sub-prefix in the store.
 *
 * - One database without `=NAME`: the store's prefix itself, exactly as before several
 *   databases existed, so existing stores keep working.
 * - Several databases, or an explicit `PATH=NAME`: each one under `PREFIX/NAME/`.
 */
import { join, resolve } from "node:path";
import type { DatabaseSpec, StoreUrl } from "./store/settings.ts";

export type { DatabaseSpec };
import { checkNameLength, derivedName, realDatabasePath } from "./dbfile.ts";
import { configError } from "./errors.ts";
import { BACKUPS_DIR, MARKER_NAME } from "./store/keys.ts";

/** Separates the paths in LIFEBOAT_DB; a path containing it is given with repeated `--db`. */
export const DB_SEPARATOR = ",";

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** Names that would land on the single-database layout's own objects. */
const RESERVED = new Set([BACKUPS_DIR, MARKER_NAME]);

/** True when `name` can name a database's sub-prefix (letters, digits, `._-`, no leading dot). */
export function isDatabaseName(name: string): boolean {
  return NAME.test(name) && !name.startsWith(".") && !RESERVED.has(name);
}

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

// Defined with the database file (a leaf), where commands name a database given without a name.
export { derivedName };

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
 * Builds the databases of one run from `entries` (see `databaseEntries`) and the store `url`:
 * names derived or given, each one's store. Throws a config error (exit 2) naming both databases
 * and the fix when two would share a name, and for a name lifeboat cannot use.
 */
export function planDatabases(entries: string[], url: StoreUrl, cwd = Deno.cwd()): DatabaseSpec[] {
  const several = entries.length > 1;
  const specs = entries.map((entry): DatabaseSpec => {
    const { path, name } = splitMapping(entry);
    const abs = resolve(cwd, path);
    const own = several || name !== undefined;
    const chosen = name ?? derivedName(abs);
    if (own && !isDatabaseName(chosen)) {
      throw configError(
        `${name === undefined ? "the name derived from" : "the name given to"} ${abs} ` +
          `(${JSON.stringify(chosen)}) cannot name its store sub-prefix`,
        `Give one with --db ${path}=NAME: 1–64 letters, digits, '.', '_' or '-', not starting ` +
          `with '.', not ${[...RESERVED].join(" or ")}`,
      );
    }
    const among = !own && isDatabaseName(chosen) ? subStore(url, chosen) : undefined;
    return { path: abs, name: chosen, own, store: own ? subStore(url, chosen) : url, among };
  });
  for (let i = 0; i < specs.length; i++) {
    for (let j = 0; j < i; j++) {
      if (specs[i].name === specs[j].name && specs[i].own) {
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

/** Returns `url` with `name` appended to its prefix (S3) or directory (file store). */
export function subStore(url: StoreUrl, name: string): StoreUrl {
  if (url.kind === "file") return { kind: "file", dir: join(url.dir, name) };
  return { ...url, prefix: url.prefix ? `${url.prefix}/${name}` : name };
}

/**
 * Resolves each database's real path once (symlinks followed, as for one database) and checks
 * its name length. Throws a config error (exit 2) when two entries are the same file.
 */
export async function resolveDatabases(specs: DatabaseSpec[]): Promise<DatabaseSpec[]> {
  const out: DatabaseSpec[] = [];
  for (const s of specs) {
    const path = checkNameLength(await realDatabasePath(s.path));
    const twin = out.find((o) => o.path === path);
    if (twin) {
      throw configError(
        `${twin.path} is given twice (as ${twin.name} and as ${s.name})`,
        "Give each database once: --db PATH, or PATH=NAME to choose its store name",
      );
    }
    out.push({ ...s, path });
  }
  return out;
}
