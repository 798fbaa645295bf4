/**
 * `lifeboat restore` (and `watch`'s restore): for every database of the run, put its newest
 * verified backup in place, or confirm the store holds none of it — deciding from the store's
 * manifest and the listings of every place its backups may be in (store/history.ts), never from
 * an absence in one place. Then refuse, before anything starts, every database whose empty start
 * or older backup could lose data.
 */
import { dirname } from "node:path";
import type { Clock } from "../clock.ts";
import { restoreTarget } from "../dbfile_in_use.ts";
import { formatDuration } from "../duration.ts";
import { isFinal, oneLine, operationError } from "../errors.ts";
import { isDiskFull } from "../fsutil.ts";
import { logger } from "../log.ts";
import { logRetries, retry } from "../retry.ts";
import type { RestoreCheck, Verified } from "../snapshot/install.ts";
import { installDatabase } from "../snapshot/install_file.ts";
import {
  decideRestore,
  kinOf,
  readDbHistory,
  readShared,
  type RestorePlan,
  type RunDb,
  type StoreState,
} from "../store/history.ts";
import { isKeptKey, parseKey } from "../store/keys.ts";
import {
  addBypassed,
  type Bypassed,
  claimRoot,
  currentOf,
  entryOf,
  updateManifest,
} from "../store/manifest.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { readVerified } from "./readback.ts";
import { forEachDatabase } from "./several.ts";

const log = logger("restore");

/** How many of the newest backups that fail verification restore tries before giving up. */
export const MAX_CANDIDATES = 3;
/** Downloads of one backup that fail verification before restore moves on to an older one. */
export const VERIFY_ATTEMPTS = 3;
/** The first wait between two attempts at a store request (it doubles, up to 8 s). */
export const RETRY_BASE_MS = 500;
/** A newest backup ordered this far ahead of the local clock is reported (a clock is off). */
export const FUTURE_WARN_MS = 5 * 60_000;

/** What a restore needs to know. */
export interface RestoreOptions {
  force: boolean;
  /** Attempts at each store request before the store counts as unreachable
   * (LIFEBOAT_RESTORE_ATTEMPTS). */
  attempts: number;
  /** The first wait between attempts; RETRY_BASE_MS unless a test needs it shorter. */
  retryBaseMs?: number;
  /** Start empty although the store says the database had backups (`--allow-empty`). */
  allowEmpty?: boolean;
  /** The SQLite check after the SHA-256 matched (LIFEBOAT_RESTORE_CHECK; default "auto"). */
  restoreCheck?: RestoreCheck;
  /** Restore exactly this backup key (`--from`, one database only), nothing older or newer. */
  from?: string;
  /** This machine's name, for the manifest when the restore records something there. */
  machine?: string;
}

/** What a restore touches outside itself. */
export interface RestoreDeps {
  store: Store;
  clock: Clock;
  /**
   * Puts the verified file `tmp` (beside `db`) in place of `db`; default `installDatabase`. A job
   * process hands it to `watch`, which holds the database's lock (staged_install.ts).
   */
  install?: (tmp: string, db: string) => Promise<void>;
}

/** How a restore ended; every outcome here means the app may start. */
export interface RestoreResult {
  outcome: "exists" | "fresh" | "restored";
  key?: string;
  bytes?: number;
  /** SHA-256 of the restored file, so an idle app's first backup can be skipped. */
  sha256?: string;
  ms: number;
  /** The database's newest backup when restore looked (null: none); undefined when it did not look. */
  newestKey?: string | null;
  /** How far the newest backup's order time is ahead of the local clock (0 when it is not). */
  futureMs?: number;
  /** Newer backups that failed verification and were passed over (never to be superseded). */
  bypassed?: Bypassed[];
}

/**
 * Restores every database of `dbs` (see the module header) and resolves with each one's result,
 * in order. Throws (exit 1, the databases restored staying in place) when the store cannot be
 * read, when no candidate of a database verifies, or when a database must not start as things
 * are: empty while the store says it had backups, or with an older backup than one the store's
 * root may hold for it.
 */
export async function restoreAll(
  dbs: readonly RunDb[],
  o: RestoreOptions,
  deps: RestoreDeps,
  concurrency = dbs.length,
): Promise<RestoreResult[]> {
  const started = deps.clock.now();
  const elapsed = () => deps.clock.now() - started;
  const wanted: RunDb[] = [];
  for (const db of dbs) {
    if ((await restoreTarget(db.path, o.force)) === "replace") wanted.push(db);
  }
  const withRetry = retrying(o, deps.clock);
  const unreadable = (err: unknown): never => {
    if (isFinal(err)) throw err;
    throw operationError(
      `cannot read ${deps.store.location}: ${oneLine(err)}`,
      "Check the URL, credentials and network; nothing was restored and the app must not start",
      err,
    );
  };
  // The manifest and the legacy root decide for every database: read once, before any.
  const shared = wanted.length === 0
    ? undefined
    : await withRetry("reading the store", () => readShared(deps.store)).catch(unreadable);
  const claims: { name: string; through: string }[] = [];
  const results = await forEachDatabase(
    dbs,
    concurrency,
    "restore",
    async (db) => {
      if (!shared || !wanted.includes(db)) {
        log.info("database {path} exists, restore skipped", {
          event: "restore_skipped",
          path: db.path,
        });
        return { outcome: "exists", ms: elapsed() } as RestoreResult;
      }
      // Its own places, and those of a database at its path under another name (a rename).
      const names = [db.name, ...kinOf(db, dbs, shared).map((k) => k.name)];
      const histories = await withRetry(
        `listing ${db.name}'s backups`,
        () => Promise.all(names.map((name) => readDbHistory(deps.store, name))),
      ).catch(unreadable);
      const state: StoreState = { ...shared, dbs: new Map(histories.map((h) => [h.name, h])) };
      const plan = o.from
        ? await planFrom(o.from, state, deps.store)
        : decideRestore(db, dbs, state, !!o.allowEmpty, deps.store.location);
      warnSkipped(state, db.name);
      if (plan.kind === "refuse") throw plan.error;
      // The app may create the database on a fresh start: make sure its directory exists.
      await Deno.mkdir(dirname(db.path), { recursive: true });
      if (plan.kind === "fresh") {
        // --allow-empty let it start empty where the rules would refuse: said at warning level.
        const allowed = !!o.allowEmpty &&
          decideRestore(db, dbs, state, false, deps.store.location).kind === "refuse";
        log[allowed ? "warn" : "info"](
          allowed
            ? "no backup of {name} found in {store}, starting fresh (--allow-empty) although " +
              "the store says it had some, or may hold them under another name"
            : "no backup of {name} found in {store}, starting fresh",
          {
            event: allowed ? "restore_fresh_allowed" : "restore_fresh",
            store: deps.store.location,
            name: db.name,
            ms: elapsed(),
          },
        );
        return { outcome: "fresh", ms: elapsed(), newestKey: null, futureMs: 0 } as RestoreResult;
      }
      const r = await restoreFrom(plan.candidates, db.path, o, deps, withRetry, elapsed);
      const claim = plan.claim ?? rootKeyOf(r.key);
      if (claim) claims.push({ name: db.name, through: claim });
      return r;
    },
    "Nothing was started; the databases that were restored stay in place, untouched. Fix " +
      "the cause and start again",
  );
  await record(results, dbs, claims, o, deps);
  return results;
}

/**
 * Restores one database run alone (see restoreAll): `db` under store name `name`, given without
 * `=NAME` unless `explicit` (then it never takes the legacy root's backups).
 */
export async function restoreDatabase(
  o: RestoreOptions & { db: string; name: string; explicit?: boolean },
  deps: RestoreDeps,
): Promise<RestoreResult> {
  return (await restoreAll([{ path: o.db, name: o.name, explicit: !!o.explicit }], o, deps))[0];
}

/**
 * Downloads and verifies `candidates` newest first (each up to VERIFY_ATTEMPTS times), installs
 * the first that passes into `db` by atomic rename and resolves with it. Candidates without a
 * SHA-256 (neither metadata nor seal: not a lifeboat backup, or one never finished) are passed
 * over without counting; after MAX_CANDIDATES that fail verification it throws (exit 1), the
 * target left as it was.
 */
async function restoreFrom(
  candidates: BackupInfo[],
  db: string,
  o: RestoreOptions,
  deps: RestoreDeps,
  withRetry: ReturnType<typeof retrying>,
  elapsed: () => number,
): Promise<RestoreResult> {
  const newestKey = candidates[0].key;
  const futureMs = Math.max(0, candidates[0].createdAt.getTime() - deps.clock.now());
  if (futureMs > FUTURE_WARN_MS) {
    log.warn(
      "the newest backup {key} is dated {ahead} ahead of this machine's clock: a clock is off " +
        "(here or where it was written). New backups still sort after it; check NTP",
      { event: "backup_in_future", key: newestKey, ahead: formatDuration(futureMs), ms: futureMs },
    );
  }
  const problems: string[] = [];
  const bypassed: Bypassed[] = [];
  for (const c of candidates) {
    if (problems.length >= MAX_CANDIDATES) break;
    const tmp = tempPathBeside(db);
    try {
      let got: Verified | undefined;
      for (let attempt = 1; attempt <= VERIFY_ATTEMPTS && !got?.ok; attempt++) {
        got = await withRetry(
          `downloading ${c.key}`,
          () =>
            readVerified(deps.store, c.key, tmp, {
              mode: "install",
              check: o.restoreCheck,
              sealed: c.sha256,
            }),
        );
        if (!got.ok && got.unverifiable) break;
        if (!got.ok && attempt < VERIFY_ATTEMPTS) {
          log.warn("backup {key} failed verification ({problem}); downloading it again", {
            event: "restore_reread",
            key: c.key,
            problem: got.problem,
            attempt,
          });
        }
      }
      if (!got?.ok) {
        const problem = got?.problem ?? "not verified";
        if (got && !got.ok && got.unverifiable) {
          log.warn("skipping {key}: {problem} (not a finished lifeboat backup)", {
            event: "restore_unverifiable",
            key: c.key,
            problem,
          });
          continue;
        }
        problems.push(`${c.key}: ${problem}`);
        bypassed.push({ key: c.key, at: new Date(deps.clock.now()).toISOString(), problem });
        log.error(
          "skipping backup {key}: it failed verification {attempts} times ({problem}); " +
            "trying an older one",
          { event: "restore_rejected", key: c.key, problem, attempts: VERIFY_ATTEMPTS },
        );
        continue;
      }
      await (deps.install ?? installDatabase)(tmp, db);
      const ms = elapsed();
      log.info("restored {key} from {store}: {bytes} bytes in {duration}", {
        event: "restore_finished",
        key: c.key,
        store: deps.store.location,
        bytes: got.size,
        ms,
        duration: formatDuration(ms),
      });
      return {
        outcome: "restored",
        key: c.key,
        bytes: got.size,
        sha256: got.sha256,
        ms,
        newestKey,
        futureMs,
        ...(bypassed.length ? { bypassed } : {}),
      };
    } catch (err) {
      if (isFinal(err)) throw err;
      if (isDiskFull(err)) {
        throw operationError(
          `disk full while restoring ${c.key} (${sizeOf(c)}) into ${dirname(db)}`,
          "Free disk space or give the machine a bigger disk; the database was not changed",
          err,
        );
      }
      throw operationError(
        `restore of ${c.key} failed: ${oneLine(err)}`,
        "Check the network, credentials and free disk space; the database was not changed",
        err,
      );
    } finally {
      await removeTemp(tmp);
    }
  }
  throw operationError(
    problems.length === 0
      ? `none of the ${candidates.length} newest backups is a finished lifeboat backup`
      : `none of the newest backups passed verification (${problems.join("; ")})`,
    "Inspect the store (lifeboat list); restore an older backup with --from KEY. The database " +
      "was not changed",
  );
}

/** Logs, once per restore, the keys the rules left out (dated past the key scheme's end). */
function warnSkipped(state: StoreState, name: string): void {
  const own = state.dbs.get(name)!;
  for (const b of [...own.pastEnd, ...state.root.pastEnd]) {
    log.warn(
      "{key} is dated {time}, within a year of the key scheme's end: no clock says that, so it " +
        "is neither restored nor ordered after; move it out of the store",
      { event: "key_past_end", key: b.key, time: b.createdAt.toISOString() },
    );
  }
}

/**
 * The plan of `--from KEY`: exactly that backup, of any layout of this store, or a kept copy (as
 * `lifeboat list` shows them); refused (exit 1) when it is neither.
 */
async function planFrom(key: string, state: StoreState, store: Store): Promise<RestorePlan> {
  const all = [...state.root.backups, ...[...state.dbs.values()].flatMap((d) => d.own)];
  const listed = all.find((b) => b.key === key);
  if (listed) return { kind: "restore", candidates: [listed] };
  const parsed = isKeptKey(key)
    ? parseKey((await store.describe(key))?.meta.sourceKey ?? "")
    : parseKey(key);
  if (!parsed) {
    return {
      kind: "refuse",
      error: operationError(
        `--from ${JSON.stringify(key)} is not a backup in ${store.location}`,
        "Give a key as `lifeboat list` prints it (backups/…/….sqlite3, kept/NAME.sqlite3)",
      ),
    };
  }
  const { ms, machine, place } = parsed;
  return { kind: "restore", candidates: [{ key, createdAt: new Date(ms), machine, place }] };
}

/** The root key a restored backup was, if it was one (a claim of the legacy root). */
function rootKeyOf(key: string | undefined): string | undefined {
  const layout = key === undefined ? undefined : parseKey(key)?.place.layout;
  return layout === "root-v1" || layout === "root-v2" ? key : undefined;
}

/**
 * Writes what the restore learned into the store's manifest: a root claim (the database whose
 * backups the legacy root holds) and the backups passed over. Never throws: a failure is logged,
 * and the restore stands (the rules decide the same way next time).
 */
async function record(
  results: RestoreResult[],
  dbs: readonly RunDb[],
  claims: { name: string; through: string }[],
  o: RestoreOptions,
  deps: RestoreDeps,
): Promise<void> {
  const bypassed = dbs.map((db, i) => ({ db, list: results[i].bypassed ?? [] }))
    .filter((b) => b.list.length > 0);
  if (claims.length === 0 && bypassed.length === 0) return;
  const now = new Date(deps.clock.now());
  try {
    await updateManifest(deps.store, (m) => {
      const next = currentOf(m, now, o.machine ?? "unknown");
      let changed = next.format !== m?.format;
      for (const c of claims) {
        const { ms, place } = parseKey(c.through)!;
        changed = claimRoot(next, c.name, ms, now, place.layout) || changed;
      }
      for (const b of bypassed) {
        changed = addBypassed(entryOf(next, b.db.name, now), b.list) || changed;
      }
      return changed ? next : undefined;
    });
  } catch (err) {
    log.warn(
      "could not record the restore in the store's manifest (decided again next time): {error}",
      { event: "manifest_failed", error: oneLine(err) },
    );
  }
}

/** Retries one store request with backoff (LIFEBOAT_RESTORE_ATTEMPTS), never a full disk. */
function retrying(o: RestoreOptions, clock: Clock) {
  return <T>(what: string, fn: () => Promise<T>) =>
    retry(fn, {
      retryable: (err) => !isDiskFull(err),
      attempts: o.attempts,
      baseMs: o.retryBaseMs ?? RETRY_BASE_MS,
      clock,
      onRetry: logRetries(log, what),
    });
}

function sizeOf(c: BackupInfo): string {
  return c.size === undefined ? "size unknown" : `${c.size} bytes`;
}
