/** Running one command over several databases: bounded concurrency, labels, one verdict. */
import { withContext } from "@logtape/logtape";
import { EXIT_FAILURE, exitCodeOf, LifeboatError, oneLine, operationError } from "../errors.ts";
import { logger } from "../log.ts";
import { openStore } from "../store/open.ts";
import type { DatabaseSpec, S3Options, StoreUrl } from "../store/settings.ts";
import type { Store } from "../store/store.ts";

const log = logger("cli");

/** One database of a run: its file, its store, its name, and its label (set when there are several). */
export interface DbTarget {
  db: string;
  store: Store;
  /** The database's name (given, or derived from its file name): its `db` label in metrics. */
  name?: string;
  /** The database's store name, on every log line and metric; undefined for a lone database. */
  label?: string;
  /** The store's own prefix, when the database has a sub-prefix of its own under it. */
  parent?: Store;
  /** A lone database's sub-prefix from runs with several databases (`PREFIX/NAME/`). */
  among?: { store: Store; name: string };
}

/**
 * Opens one store per database of `cfg` (no request is made). A directory store gets each
 * database's sub-directory created when the store's directory itself exists, so that a missing
 * store is still an error but a new database in an existing one is a fresh start.
 */
export async function openTargets(
  cfg: { databases: DatabaseSpec[]; store: StoreUrl; s3: S3Options },
): Promise<DbTarget[]> {
  const targets: DbTarget[] = [];
  const parent = cfg.databases.some((d) => d.own) ? openStore(cfg.store, cfg.s3) : undefined;
  for (const d of cfg.databases) {
    if (d.own && d.store.kind === "file" && cfg.store.kind === "file") {
      const root = await Deno.stat(cfg.store.dir).catch(() => undefined);
      if (root?.isDirectory) await Deno.mkdir(d.store.dir, { recursive: true });
    }
    // A directory that is not there holds nothing (and must not read as a missing store).
    const among = d.among?.kind === "file"
      ? (await Deno.stat(d.among.dir).catch(() => undefined))?.isDirectory ? d.among : undefined
      : d.among;
    targets.push({
      db: d.path,
      store: openStore(d.store, cfg.s3),
      name: d.name,
      label: d.own ? d.name : undefined,
      parent: d.own ? parent : undefined,
      among: among && { store: openStore(among, cfg.s3), name: d.name },
    });
  }
  return targets;
}

/**
 * After a restore of `t` found its store empty ("fresh"): throws (exit 1) when its backups are
 * elsewhere in the store because the list of databases changed, so starting it empty would lose
 * them. A lone database: its `PREFIX/NAME/` holds backups or a marker (it ran with others before).
 * A database among several: the store's own prefix holds a single database's backups or marker
 * while no database of `all` has a sub-prefix marker yet (it ran alone before others were added).
 * `allowEmpty` starts it empty anyway. Resolves when there is nothing there; throws when the store
 * cannot be read.
 */
export async function assertNotMovedAway(
  t: DbTarget,
  all: readonly DbTarget[],
  allowEmpty?: boolean,
): Promise<void> {
  if (allowEmpty) return;
  if (t.among) {
    const { store, name } = t.among;
    const [newest] = await store.newest(1);
    if (!newest && !(await store.marker())) return;
    throw operationError(
      `${t.store.location} holds no backup, but ${store.location} holds this database's ` +
        `backups from a run with several databases: starting empty could lose it`,
      `Nothing was started. Keep its store name (--db ${t.db}=${name}) or list all the ` +
        "databases again; or pass --allow-empty to start empty on purpose",
    );
  }
  if (!t.parent) return;
  const [newest] = await t.parent.newest(1);
  if (!newest && !(await t.parent.marker())) return;
  // Once any database has its own prefix, the single-database backups are an older history.
  for (const other of all) {
    if (other !== t && other.parent && await other.store.marker()) return;
  }
  throw operationError(
    `${t.store.location} holds no backup, but ${t.parent.location} holds a single database's ` +
      `backups from before the databases had prefixes of their own: starting empty could lose it`,
    "Nothing was started. Copy that database's objects (backups/ and lifeboat.json) under its " +
      "NAME/ prefix, or restore it alone (lifeboat restore --db PATH) and run `lifeboat backup` " +
      "with all the databases once; or pass --allow-empty to start empty on purpose",
  );
}

/** Runs `fn` with every log line inside it labelled `db=label` (nothing added without a label). */
export function withDbLabel<R>(label: string | undefined, fn: () => Promise<R>): Promise<R> {
  return label === undefined ? fn() : withContext({ db: label }, fn);
}

/**
 * Calls `fn` on every item, at most `limit` at once, in order of the items; resolves with the
 * results in the same order. A rejection is passed on only after every call has settled.
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(items[i]) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<R>).value);
}

/**
 * Runs `fn` for every target (at most `limit` at once), each under its label; one failure never
 * stops the others. Resolves when all succeeded. A lone database's error is rethrown as it is;
 * with several, each failure is logged under its label and one error (exit code: the highest)
 * names every database that failed, with `hint`.
 */
export async function forEachDatabase<R>(
  targets: readonly DbTarget[],
  limit: number,
  what: string,
  fn: (t: DbTarget) => Promise<R>,
  hint = `The other databases' ${what}s stand; fix the cause and run again`,
): Promise<R[]> {
  if (targets.length === 1 && targets[0].label === undefined) return [await fn(targets[0])];
  const failures: { label: string; err: unknown }[] = [];
  const results = await mapBounded(targets, limit, (t) =>
    withDbLabel(t.label, async () => {
      try {
        return await fn(t);
      } catch (err) {
        log.error("{what} of {database} failed: {error}", {
          event: "database_failed",
          what,
          database: t.db,
          error: oneLine(err),
        });
        failures.push({ label: t.label ?? t.db, err });
        return undefined;
      }
    }));
  if (failures.length === 0) return results as R[];
  const code = Math.max(EXIT_FAILURE, ...failures.map((f) => exitCodeOf(f.err)));
  throw new LifeboatError(
    `${what} failed for ${failures.length} of ${targets.length} databases (` +
      failures.map((f) => `${f.label}: ${oneLine(f.err)}`).join("; ") + ")",
    hint,
    code,
  );
}
