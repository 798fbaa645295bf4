/** `lifeboat backup`: one consistent snapshot of a database, written as a new backup. */
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import { Phases } from "../phases.ts";
import { retry } from "../retry.ts";
import { takeSnapshot } from "../snapshot/snapshot.ts";
import { readDbHistory } from "../store/history.ts";
import {
  backupKey,
  isKeptKey,
  type Layout,
  orderTime,
  parseKey,
  tierAfter,
} from "../store/keys.ts";
import type { ManifestKeeper } from "../store/manifest_keeper.ts";
import type { Retention, RetentionOutcome } from "../store/retention.ts";
import { type BackupInfo, type BackupMeta, type Store, WriteConflict } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { VERSION } from "../version.ts";

const log = logger("backup");

/** Attempts at choosing a key, uploading and verifying before a backup counts as failed. */
const UPLOAD_ATTEMPTS = 3;
/** Keys found taken (a conditional write refused) on top of those attempts: not failures. */
const TAKEN_KEYS = 5;
/** An unknown newest backup ordered this far ahead of the clock is checked for lifeboat's metadata. */
const SUSPICIOUS_AHEAD_MS = 5 * 60_000;
/** Backups listed per place by a backup: enough to see the newest and the one before. */
const BACKUP_LIST_LIMIT = 2;

/** What a backup needs to know. */
export interface BackupOptions {
  /** The database file. */
  db: string;
  /** Its store name (keys.ts `isStoreName`). */
  name: string;
  machine: string;
  /**
   * The run's lone database, given without `=NAME`: on a store lifeboat 0.3 never wrote, the
   * one lifeboat ≤ 0.2 kept at the store's root (store/history.ts).
   */
  heir?: boolean;
}

/** What a backup run touches outside itself. */
export interface BackupDeps {
  store: Store;
  clock: Clock;
  /** Supersedes and keeps (store/retention.ts); none: nothing is tagged or kept. */
  retention?: Retention;
  /** Keeps the manifest listing this database; none: the manifest is not touched. */
  manifest?: ManifestKeeper;
}

/** State kept across backups of one database in one process. */
export interface BackupState {
  /** Checksum of the last snapshot known to be in the store (uploaded or restored). */
  lastSha256?: string;
  /**
   * The database's newest backup as this process last saw it: a key, `null` when the store had
   * none, undefined when this process has not looked (then no other writer can be told apart).
   */
  knownNewest?: string | null;
  /**
   * The backup this database's data continues from (the one restored, or this process's last
   * upload): the only one ever superseded. A newer one a restore passed over never is.
   */
  basedOn?: string;
  /** True once this process read the database's legacy places (its first backup does). */
  legacyRead?: boolean;
  /** True once the manifest was seen listing this database with this process's layouts. */
  listed?: boolean;
  /** Keys that are not verifiable lifeboat backups, already reported (reported once). */
  ignored?: string[];
  /**
   * Keys this process tried to upload since its last successful backup (the last few): one that
   * landed although its backup was aborted or unproven is this process's own, never another
   * writer's.
   */
  attempted?: string[];
}

/** How one backup ended. */
export interface BackupResult {
  outcome: "uploaded" | "unchanged";
  key?: string;
  bytes: number;
  ms: number;
  /** A backup by another writer found newest in the store since this process last looked. */
  foreign?: BackupInfo;
  /** Keys passed over for ordering (not lifeboat backups, or dated past the scheme's end) that
   * this process had not reported before. */
  ignored?: string[];
  /** What retention did (tagging, the kept copy). */
  retention?: RetentionOutcome;
}

/**
 * Snapshots `db` and uploads it under a new key that sorts newer than the database's newest
 * backup, whatever the local clock says, in the tier its predecessor gives (keys.ts `tierAfter`),
 * unless it is byte-identical to the newest backup this process knows to be in the store. The
 * bytes upload while the snapshot's quick_check runs; the object becomes visible only once it
 * passed; a key someone else took is not a failure (a new key is picked). A backup counts only
 * when the store proved it holds the bytes; then retention runs (store/retention.ts) and the
 * manifest is kept listing the database. The temporary snapshot is removed on every path; on
 * failure nothing a restore would pick is left in the store and `state` is unchanged.
 */
export async function backupOnce(
  opts: BackupOptions,
  deps: BackupDeps,
  state: BackupState,
  signal?: AbortSignal,
): Promise<BackupResult> {
  const started = deps.clock.now();
  const tmp = tempPathBeside(opts.db);
  // Aborted when this backup ends, however it ends: stops a quick_check nobody waits for.
  const done = new AbortController();
  const snapSignal = signal ? AbortSignal.any([signal, done.signal]) : done.signal;
  log.debug("backup started: {db}", { db: opts.db });
  const phases = new Phases();
  const requestsBefore = deps.store.requests?.() ?? 0;
  try {
    // The database's newest backups are listed while the snapshot is taken: the requests hide
    // behind the copy. (A writer between the LIST and the upload is the same race as one just
    // after it: the next backup sees it.) Catch now, rethrow below: never unhandled.
    const listing = settle(phases.time("list", () => newestFor(opts, deps, state)));
    const { checked, ...snap } = await takeSnapshot(opts.db, tmp, snapSignal, phases);
    let { newest, ignored, layouts } = await unwrap(listing);
    const seen = state.attempted?.includes(newest?.key ?? "")
      ? "own"
      : compareWithKnown(state.knownNewest, newest);
    const foreign = seen === "foreign" ? newest : undefined;
    if (foreign) reportForeign(opts, state.knownNewest, foreign);
    // An upload of this process that landed although it was aborted or unproven: upload again.
    if (snap.sha256 === state.lastSha256 && seen !== "missing" && seen !== "own") {
      state.knownNewest = newest?.key ?? null;
      const retention = newest && deps.retention
        ? await deps.retention.ensureKept(opts.name, newest)
        : undefined;
      await keepListed(opts, deps, state, layouts);
      const ms = deps.clock.now() - started;
      log.info("backup unchanged: {bytes} bytes identical to the last backup, no upload", {
        event: "backup_unchanged",
        bytes: snap.size,
        ms,
      });
      return { outcome: "unchanged", bytes: snap.size, ms, foreign, ignored, retention };
    }
    const meta: BackupMeta = {
      ...snap,
      createdAt: new Date(started).toISOString(),
      version: VERSION,
      machine: opts.machine,
      checked: "quick_check", // true of every object that becomes visible: put awaits `checked`
      name: opts.name,
      path: opts.db,
    };
    let taken = 0;
    const key = await retry(async (attempt) => {
      for (;;) {
        if (attempt > 1 || taken > 0) {
          ({ newest, ignored } = await phases.time("list", () => newestFor(opts, deps, state)));
        }
        const order = orderTime(deps.clock.now(), newest?.createdAt.getTime());
        const tier = tierAfter(order, newest?.createdAt.getTime());
        const next = backupKey(opts.name, tier, order, opts.machine);
        state.attempted = [...(state.attempted ?? []).slice(-15), next];
        try {
          await deps.store.put(next, tmp, meta, { signal, ready: checked, phases });
          return next;
        } catch (err) {
          // Someone else holds that key: pick another, without spending an attempt on it.
          if (!(err instanceof WriteConflict) || ++taken > TAKEN_KEYS) throw err;
          log.info("{key} was taken (a conditional write refused it): picking another key", {
            event: "key_taken",
            key: next,
          });
        }
      }
    }, {
      attempts: UPLOAD_ATTEMPTS,
      baseMs: 500,
      clock: deps.clock,
      signal,
      onRetry: (err, attempt, delay) =>
        log.warn("upload failed (attempt {attempt}), retrying in {delay}: {error}", {
          event: "retry",
          attempt,
          delay: formatDuration(delay),
          error: oneLine(err),
        }),
    });
    state.lastSha256 = snap.sha256;
    state.knownNewest = key;
    state.attempted = undefined; // earlier failed attempts all sort before `key`
    // Only the backup this data continued from is superseded, never one a restore passed over.
    const previous = newest && newest.key === state.basedOn ? newest : undefined;
    state.basedOn = key;
    const [retention] = await Promise.all([
      phases.time(
        "tag",
        async () => await deps.retention?.afterBackup(opts.name, key, meta, previous),
      ),
      phases.time("manifest", () => keepListed(opts, deps, state, [...layouts, "v3"])),
    ]);
    const ms = deps.clock.now() - started;
    log.info("backup finished: {key}, {bytes} bytes in {duration}", {
      event: "backup_finished",
      key,
      bytes: snap.size,
      ms,
      duration: formatDuration(ms),
      store: deps.store.location,
    });
    return { outcome: "uploaded", key, bytes: snap.size, ms, foreign, ignored, retention };
  } finally {
    done.abort();
    await removeTemp(tmp);
    log.debug("backup phases: {phases}; {requests} store requests", {
      event: "backup_phases",
      phases: phases.toString(),
      ms: phases.times(),
      // Other databases' requests count too when several back up at once.
      requests: (deps.store.requests?.() ?? 0) - requestsBefore,
    });
  }
}

/**
 * The database's newest backup for ordering: from its three tiers, and on this process's first
 * backup also from its legacy places and kept copy. A newest key of another machine dated well
 * ahead of the clock is checked (one HeadObject): without lifeboat's metadata it is not a backup
 * and is passed over for ordering, as is a key dated past the scheme's end (each reported once).
 */
async function newestFor(
  opts: BackupOptions,
  deps: BackupDeps,
  state: BackupState,
): Promise<{ newest?: BackupInfo; ignored?: string[]; layouts: Layout[] }> {
  const h = await readDbHistory(deps.store, opts.name, BACKUP_LIST_LIMIT, !state.legacyRead);
  state.legacyRead = true;
  const layouts = [
    ...new Set(h.own.map((b): Layout => isKeptKey(b.key) ? "kept" : b.place.layout)),
  ];
  const ignored: string[] = h.pastEnd.map((b) => b.key);
  let newest: BackupInfo | undefined;
  for (const b of h.own) {
    const known = b.key === state.knownNewest || b.key === state.basedOn ||
      state.attempted?.includes(b.key);
    if (known || b.createdAt.getTime() <= deps.clock.now() + SUSPICIOUS_AHEAD_MS) {
      newest = b;
      break;
    }
    const meta = state.ignored?.includes(b.key)
      ? undefined
      : (await deps.store.describe(b.key))?.meta;
    if (meta && (meta.sha256 || meta.createdAt || meta.version)) {
      newest = b;
      break;
    }
    ignored.push(b.key);
  }
  const fresh = ignored.filter((k) => !state.ignored?.includes(k));
  for (const key of fresh) {
    log.warn(
      "{key} is not a lifeboat backup of this database (no lifeboat metadata, or dated past the " +
        "key scheme's end): passed over for ordering; move it out of the store",
      { event: "key_ignored", key },
    );
  }
  if (fresh.length) state.ignored = [...(state.ignored ?? []), ...fresh].slice(-50);
  return { newest, ...(fresh.length ? { ignored: fresh } : {}), layouts };
}

/** Keeps the manifest listing the database with `layouts` (checked every backup; never throws). */
async function keepListed(
  opts: BackupOptions,
  deps: BackupDeps,
  state: BackupState,
  layouts: Layout[],
): Promise<void> {
  if (!deps.manifest) return;
  const problem = await deps.manifest.ensure(opts.name, opts.db, layouts, opts.heir);
  if (problem) {
    log.warn("could not update the store's manifest (tried again at the next backup): {error}", {
      event: "manifest_failed",
      error: problem,
    });
  } else state.listed = true;
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Turns a promise into one that never rejects, so it can be awaited later without a leak. */
function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (error) => ({ ok: false as const, error }),
  );
}

/** Returns a settled promise's value or throws its error. */
async function unwrap<T>(p: Promise<Settled<T>>): Promise<T> {
  const r = await p;
  if (!r.ok) throw r.error;
  return r.value;
}

/**
 * How the database's newest backup compares with the one this process last saw: the same (or
 * nothing known), newer and by another writer, or gone (deleted or expired: upload again).
 */
function compareWithKnown(
  known: string | null | undefined,
  newest: BackupInfo | undefined,
): "same" | "foreign" | "missing" {
  if (known === undefined || newest?.key === known) return "same";
  const knownMs = known === null ? undefined : parseKey(known)?.ms;
  if (newest && (knownMs === undefined || newest.createdAt.getTime() >= knownMs)) return "foreign";
  return known === null ? "same" : "missing";
}

/** Logs, at error level, that another writer stored the newest backup. */
function reportForeign(o: BackupOptions, known: string | null | undefined, b: BackupInfo): void {
  log.error(
    "another writer shares this store: {other}'s backup {key} is newer than {known}, the newest " +
      "this machine ({machine}) knew of. Each machine's writes are lost to the other at the next " +
      "restore: run one machine per store (fly deploy --ha=false; fly scale count 1)",
    {
      event: "foreign_writer",
      other: b.machine,
      key: b.key,
      known: known ?? "(none)",
      machine: o.machine,
    },
  );
}
