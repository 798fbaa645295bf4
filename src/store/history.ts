/**
 * A database's history across every place the store has kept it in (keys.ts), read in one round
 * of concurrent requests, and the rules that decide a restore from it: which backups are the
 * database's, and when starting it empty or restoring an older backup would lose data.
 *
 * The one hard case is the legacy root: lifeboat ≤ 0.2 kept a database that ran alone at the
 * store's root without writing its name down. The manifest records which database has claimed
 * those backups (`root.name`, up to the order time `root.through`); root keys ordered after that
 * are nobody's until claimed again. A lone database given without `=NAME`, on a store lifeboat 0.3 has never
 * written to, takes them (exactly what 0.2 did); any other case where they might be a
 * database's newest data is refused with a hint that names the keys and the command that claims
 * them (`lifeboat restore --from KEY`). Nothing here decides from absence.
 */
import { LifeboatError, operationError } from "../errors.ts";
import {
  BACKUPS_DIR,
  isKeptKey,
  isPastEnd,
  isStoreName,
  KEPT_DIR,
  keptKey,
  type Layout,
  legacyMarkerKey,
  parseKey,
  type Place,
  placeDir,
  placesOf,
  TIERS,
} from "./keys.ts";
import { MANIFEST_FORMAT, type ManifestDb, type ReadManifest, readManifest } from "./manifest.ts";
import type { BackupInfo, Listing, Store } from "./store.ts";

/** What the store holds for one database, newest first. */
export interface DbHistory {
  name: string;
  /**
   * Its own backups (format 3 tiers, 0.2's `NAME/backups/`, its kept copy unless the copy's
   * source is listed), newest first; keys dated past the scheme's end are left out.
   */
  own: BackupInfo[];
  /** 0.2's marker of it (`NAME/lifeboat.json`) is there: it had backups once. */
  legacyMarker: boolean;
  /** Keys left out because they are dated within a year of the key scheme's end (2286). */
  pastEnd: BackupInfo[];
  /** Objects in its places that are not backups (counted, never followed). */
  foreign: number;
  /** False when a place held more foreign objects than the listing budget reaches past. */
  complete: boolean;
}

/** The legacy root (0.1's keys at the prefix, 0.2's `backups/`), newest first. */
export interface RootHistory {
  backups: BackupInfo[];
  pastEnd: BackupInfo[];
  foreign: number;
  complete: boolean;
}

/** The store as restore sees it: its manifest, the legacy root, and each database's history. */
export interface StoreState {
  manifest?: ReadManifest;
  /** Without a manifest of this format: the databases a scan of the store found. */
  scanned?: ManifestDb[];
  root: RootHistory;
  dbs: Map<string, DbHistory>;
}

/** One database of a run, as the rules need it. */
export interface RunDb {
  name: string;
  path: string;
  /** Given with `=NAME` (a lone database given without one is the legacy root's). */
  explicit: boolean;
}

/** How a database's restore goes: its candidates, or a fresh start, or a refusal. */
export type RestorePlan =
  | {
    kind: "restore";
    /** Newest first; restore tries them in order. */
    candidates: BackupInfo[];
    /** Root keys taken as this database's by the rules: claim them through this key. */
    claim?: string;
  }
  | { kind: "fresh" }
  | { kind: "refuse"; error: LifeboatError };

/** Backups listed per place: far more than restore's three tries, for the same requests. */
export const LIST_LIMIT = 20;

/** What every database's restore shares: the manifest and the legacy root. */
export type SharedState = Omit<StoreState, "dbs">;

/**
 * Reads the manifest and the legacy root (at once); when there is no manifest of this format
 * (deleted, or the store is older), the databases the store holds are found by scanning it
 * (`scanDatabases`). Throws when any of it cannot be read.
 */
export async function readShared(store: Store, limit = LIST_LIMIT): Promise<SharedState> {
  const [manifest, root] = await Promise.all([readManifest(store), readRoot(store, limit)]);
  const scanned = manifest?.manifest.format === MANIFEST_FORMAT
    ? undefined
    : await scanDatabases(store);
  return { manifest, root, ...(scanned ? { scanned } : {}) };
}

/**
 * The databases a store holds, found without its manifest: the names under the tiers, the kept
 * copies and 0.2's `NAME/backups/`, each with the path its newest backup recorded (lifeboat
 * ≥ 0.3 records it). What the manifest lists, rebuilt from the backups themselves, so that
 * losing the manifest loses no rename and no database (the root's claim excepted: nobody's).
 */
export async function scanDatabases(store: Store): Promise<ManifestDb[]> {
  const [tiers, kept, top] = await Promise.all([
    Promise.all(TIERS.map((t) => store.dirs(`${BACKUPS_DIR}/${t}/`))),
    store.list(`${KEPT_DIR}/`, 0),
    store.dirs(""),
  ]);
  const v3 = new Set(tiers.flat());
  const keptNames = new Set(
    kept.others.filter(isKeptKey).map((k) => k.slice(KEPT_DIR.length + 1, -".sqlite3".length)),
  );
  const legacy = top.filter((n) => isStoreName(n) && n !== BACKUPS_DIR && n !== KEPT_DIR);
  const names = [...new Set([...v3, ...keptNames, ...legacy])].sort();
  const found = await Promise.all(names.map(async (name): Promise<ManifestDb | undefined> => {
    const h = await readDbHistory(store, name, 1);
    if (h.own.length === 0 && !h.legacyMarker) return undefined;
    const layouts = [...new Set(h.own.map((b) => isKeptKey(b.key) ? "kept" : b.place.layout))];
    const path = h.own[0] ? (await store.describe(h.own[0].key))?.meta.path : undefined;
    return {
      name,
      since: new Date(0).toISOString(),
      layouts: layouts.length ? layouts as Layout[] : ["named-v2"],
      ...(path ? { path } : {}),
    };
  }));
  return found.filter((d): d is ManifestDb => d !== undefined);
}

/** The databases the store is known to hold: the manifest's, or those a scan found. */
export function databasesOf(state: SharedState): ManifestDb[] {
  const m = state.manifest?.manifest;
  return m?.format === MANIFEST_FORMAT ? m.databases : state.scanned ?? [];
}

/** True when lifeboat ≥ 0.3 has written to the store (its manifest, or backups of its layout). */
export function writtenByThisFormat(state: SharedState): boolean {
  return state.manifest?.manifest.format === MANIFEST_FORMAT ||
    (state.scanned ?? []).some((d) => d.layouts.includes("v3") || d.layouts.includes("kept"));
}

/**
 * Reads the manifest, the legacy root and the history of each database `names` (all at once).
 * Throws when any of it cannot be read: a partial picture must never decide a restore.
 */
export async function readStoreState(
  store: Store,
  names: readonly string[],
  limit = LIST_LIMIT,
): Promise<StoreState> {
  const [shared, ...dbs] = await Promise.all([
    readShared(store, limit),
    ...names.map((name) => readDbHistory(store, name, limit)),
  ]);
  return { ...shared, dbs: new Map(dbs.map((d) => [d.name, d])) };
}

/** Reads the legacy root's backups (0.2's `backups/`, 0.1's keys at the prefix). */
export async function readRoot(store: Store, limit = LIST_LIMIT): Promise<RootHistory> {
  const lists = await Promise.all(
    [{ layout: "root-v2" }, { layout: "root-v1" }].map((p) =>
      store.list(placeDir(p as Place), limit)
    ),
  );
  return { ...merge(lists, limit) };
}

/**
 * Awaits every promise; when any fails, throws the error of the first failed one in the given
 * order, not the first to fail in time. Why: a HEAD's error answer has no body, so the same
 * refusal reads "403" from it but "InvalidAccessKeyId" from a LIST; listing first explains it.
 */
async function allInOrder<T extends readonly unknown[]>(
  promises: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const settled = await Promise.allSettled(promises);
  for (const s of settled) if (s.status === "rejected") throw s.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/**
 * Reads one database's history: its three tiers, 0.2's `NAME/backups/`, its kept copy and 0.2's
 * marker of it; `withLegacy` false reads the tiers alone (a backup's routine look).
 */
export async function readDbHistory(
  store: Store,
  name: string,
  limit = LIST_LIMIT,
  withLegacy = true,
): Promise<DbHistory> {
  const places = placesOf(name, false).filter((p) => withLegacy || p.layout === "v3");
  const [lists, marker, kept] = await allInOrder(
    [
      Promise.all(places.map((p) => store.list(placeDir(p), limit))),
      withLegacy ? store.readSmall(legacyMarkerKey(name)) : Promise.resolve(undefined),
      withLegacy ? store.describe(keptKey(name)) : Promise.resolve(undefined),
    ] as const,
  );
  const merged = merge(lists, limit);
  const source = kept?.meta.sourceKey ? parseKey(kept.meta.sourceKey) : undefined;
  if (kept && source && !merged.backups.some((b) => b.key === kept.meta.sourceKey)) {
    const copy: BackupInfo = {
      key: keptKey(name),
      createdAt: new Date(source.ms),
      machine: source.machine,
      place: source.place,
      size: kept.size,
      ...(kept.meta.sha256 ? { sha256: kept.meta.sha256 } : {}),
    };
    (isPastEnd(source.ms) ? merged.pastEnd : merged.backups).push(copy);
    merged.backups.sort(newestFirst);
  }
  return { name, own: merged.backups, legacyMarker: marker !== undefined, ...rest(merged) };
}

/**
 * True when `db` is its run's lone database, given without `=NAME`: the database lifeboat ≤ 0.2
 * kept at the store's root (until the manifest says otherwise).
 */
export function isHeir(db: RunDb, run: readonly RunDb[]): boolean {
  return run.length === 1 && !db.explicit;
}

/** Which backups are a database's, once the legacy root's are attributed (see the header). */
export interface DbView {
  /** Its backups, newest first: its own, and the root's it owns or may take. */
  candidates: BackupInfo[];
  /** Root backups claimed by no database (nor taken by this one), newest first. */
  unclaimed: BackupInfo[];
  /** The root once held a database's history that no database has claimed. */
  unclaimedHistory: boolean;
  /** The database takes the root's unclaimed backups (a lone one, on a store 0.3 never wrote). */
  adopt: boolean;
}

/** Attributes the store's backups to `db`, one of the run's databases `run` (see DbView). */
export function viewOf(db: RunDb, run: readonly RunDb[], state: StoreState): DbView {
  const m = state.manifest?.manifest;
  const own = state.dbs.get(db.name);
  if (!own) throw new Error(`no history read for ${db.name}`);
  const claim = m?.root;
  const throughMs = claim?.name && claim.through ? Date.parse(claim.through) : -Infinity;
  const rootKeys = state.root.backups;
  const claimed = claim?.name === db.name ? rootKeys.filter((b) => msOf(b) <= throughMs) : [];
  const unclaimed = claim?.name ? rootKeys.filter((b) => msOf(b) > throughMs) : rootKeys;
  const rootHistory = rootKeys.length > 0 || m?.format === 2 || claim !== undefined;
  const unclaimedHistory = unclaimed.length > 0 || (rootHistory && !claim?.name);
  // A store 0.3 never wrote to, whose one database ran alone: take its root, as 0.2 would.
  const adopt = isHeir(db, run) && !writtenByThisFormat(state) && unclaimedHistory;
  return {
    candidates: [...own.own, ...claimed, ...(adopt ? unclaimed : [])].sort(newestFirst),
    unclaimed: adopt ? [] : unclaimed,
    unclaimedHistory: !adopt && unclaimedHistory,
    adopt,
  };
}

/**
 * Decides the restore of `db`, one of the run's databases `run`, from `state` (see viewOf for
 * which backups are its own); `allowEmpty` lets a database the store knows (or might hold in its
 * root) start empty. Never throws: a refusal is a plan, so every database of a run is decided.
 */
export function decideRestore(
  db: RunDb,
  run: readonly RunDb[],
  state: StoreState,
  allowEmpty: boolean,
  location: string,
): RestorePlan {
  const m = state.manifest?.manifest;
  const own = state.dbs.get(db.name)!;
  const { candidates, unclaimed, unclaimedHistory, adopt } = viewOf(db, run, state);
  if (!own.complete && candidates.length === 0) {
    return refuse(operationError(
      `${location}: the places of ${db.name}'s backups hold more foreign objects than lifeboat ` +
        "lists past, and no backup before them",
      "Nothing was restored. Move the objects that are not lifeboat backups out of backups/",
    ));
  }
  const known = databasesOf(state).some((d) => d.name === db.name) || own.legacyMarker ||
    m?.root?.name === db.name || adopt;
  const hint = `If they are ${db.name}'s: \`lifeboat restore --db ${db.path} --from KEY\`; if ` +
    "they are another database's, claim them for that one the same way (into any path)";
  if (unclaimedHistory) {
    const [u] = unclaimed;
    if (candidates.length === 0 && !allowEmpty) {
      return refuse(operationError(
        `${db.name} has no backup in ${location}, but the store's root holds backups of a ` +
          "database that lifeboat ≤ 0.2 ran alone, claimed by no database" +
          (u ? ` (newest: ${u.key}, ${u.createdAt.toISOString()})` : "") +
          ": starting it empty could lose them",
        `Nothing was started. ${hint}; if ${db.name} is new, pass --allow-empty once`,
      ));
    }
    if (u && candidates.length > 0 && msOf(u) > msOf(candidates[0])) {
      return refuse(operationError(
        `${db.name}'s newest backup ${candidates[0].key} (${
          candidates[0].createdAt.toISOString()
        }) ` +
          `is older than ${u.key} (${u.createdAt.toISOString()}) at the store's root, written ` +
          "by lifeboat ≤ 0.2 and claimed by no database: restoring it could lose newer data",
        `Nothing was restored. ${hint.replace("KEY", u.key)}; then start again`,
      ));
    }
  }
  // A database that was at this path under another name (a rename, rolled back or forward)
  // and holds newer data: restoring this name's older backup would lose it.
  const newer = kinOf(db, run, state).flatMap((k) => {
    const theirs = state.dbs.get(k.name)?.own[0];
    return theirs && (!candidates[0] || msOf(theirs) > msOf(candidates[0])) ? [theirs] : [];
  })[0];
  if (newer && candidates.length > 0) {
    const name = (newer.place as { name?: string }).name ?? "another database";
    return refuse(operationError(
      `${db.name}'s newest backup ${candidates[0].key} is older than ${newer.key} of ${name}, ` +
        `which was at the same path (${db.path}): restoring it could lose newer data`,
      `Nothing was restored. If ${name} is this database under its other name, keep that name ` +
        `(--db ${db.path}=${name}) or restore its newest: \`lifeboat restore --db ${db.path}=` +
        `${db.name} --from ${newer.key}\``,
    ));
  }
  if (candidates.length > 0) {
    const newestRoot = adopt ? candidates.find((b) => isRootPlace(b.place)) : undefined;
    return { kind: "restore", candidates, ...(newestRoot ? { claim: newestRoot.key } : {}) };
  }
  if (allowEmpty) return { kind: "fresh" };
  if (known) {
    return refuse(operationError(
      `${location} holds no backup of ${db.name}, but the store's manifest says it had some: ` +
        "they were deleted or expired",
      "Nothing was restored and the app must not start. Recover the objects (versioning, " +
        "lifecycle rules) or, to start empty on purpose, pass --allow-empty or set " +
        "LIFEBOAT_ALLOW_EMPTY=1",
    ));
  }
  // Databases with backups that this run does not have: one of them may be this one, renamed.
  const others = databasesOf(state).filter((d) =>
    d.layouts.length > 0 && !run.some((r) => r.name === d.name)
  );
  const samePath = others.filter((d) => d.path === db.path);
  const suspects = samePath.length > 0 ? samePath : run.length === 1 ? others : [];
  if (suspects.length > 0) {
    const names = suspects.map((d) => `${d.name} (${d.path ?? "path unknown"})`).join(", ");
    return refuse(operationError(
      `${db.name} (${db.path}) has no backup in ${location}, but the store holds backups of ` +
        `${names}, ${samePath.length > 0 ? "at the same path" : "not in this run"}: if one is ` +
        "this database under another name, starting it empty would lose its data",
      `Nothing was started. Keep that name (--db ${db.path}=${suspects[0].name}), or pass ` +
        "--allow-empty to start this one empty on purpose",
    ));
  }
  return { kind: "fresh" };
}

/** Orders backups newest first (order time, then key, so that the order is total). */
export function newestFirst(a: BackupInfo, b: BackupInfo): number {
  return msOf(b) - msOf(a) || (a.key < b.key ? 1 : a.key > b.key ? -1 : 0);
}

/**
 * The databases the manifest lists at `db`'s path under another name, not in this run, that have
 * had backups: `db` renamed, or renamed back. Their histories must be read for `decideRestore`.
 */
export function kinOf(db: RunDb, run: readonly RunDb[], state: SharedState) {
  return databasesOf(state).filter((d) =>
    d.path === db.path && d.name !== db.name && d.layouts.length > 0 &&
    !run.some((r) => r.name === d.name)
  );
}

/** True for the legacy root's places (0.1's keys at the prefix, 0.2's `backups/`). */
export function isRootPlace(p: Place): boolean {
  return p.layout === "root-v1" || p.layout === "root-v2";
}

function refuse(error: LifeboatError): RestorePlan {
  return { kind: "refuse", error };
}

function msOf(b: BackupInfo): number {
  return b.createdAt.getTime();
}

/** Merges listings newest first, setting aside keys dated past the scheme's end. */
function merge(lists: Listing[], limit: number) {
  const all = lists.flatMap((l) => l.backups).sort(newestFirst);
  return {
    backups: all.filter((b) => !isPastEnd(msOf(b))).slice(0, limit),
    pastEnd: all.filter((b) => isPastEnd(msOf(b))),
    foreign: lists.reduce((n, l) => n + l.foreign, 0),
    complete: lists.every((l) => l.complete),
  };
}

function rest(m: ReturnType<typeof merge>) {
  return { pastEnd: m.pastEnd, foreign: m.foreign, complete: m.complete };
}
