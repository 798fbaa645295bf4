/** `lifeboat backup`: one consistent snapshot of the database, written as a new backup. */
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import { retry } from "../retry.ts";
import { takeSnapshot } from "../snapshot/snapshot.ts";
import { backupKey, orderTime, parseKey } from "../store/keys.ts";
import type { BackupInfo, BackupMeta, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { VERSION } from "../version.ts";

const log = logger("backup");

/** Store format written by this version (the `backups/` layout and the marker). */
export const STORE_FORMAT = 2;
/** Attempts at choosing a key, uploading and verifying before a backup counts as failed. */
const UPLOAD_ATTEMPTS = 3;

/** What a backup needs to know. */
export interface BackupOptions {
  db: string;
  machine: string;
}

/** What a backup run touches outside itself. */
export interface BackupDeps {
  store: Store;
  clock: Clock;
}

/** State kept across backups of one process. */
export interface BackupState {
  /** Checksum of the last snapshot known to be in the store (uploaded or restored). */
  lastSha256?: string;
  /**
   * The store's newest backup as this process last saw it: a key, `null` when the store had
   * none, undefined when this process has not looked (then no other writer can be told apart).
   */
  knownNewest?: string | null;
  /** True once this process made sure the store holds its marker. */
  marked?: boolean;
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
}

/**
 * Snapshots `db` and uploads it under a new key that sorts newer than the store's newest backup,
 * whatever the local clock says, unless it is byte-identical to the newest backup this process
 * knows to be in the store. The bytes upload while the snapshot's quick_check runs; the object
 * becomes visible only once it passed. A backup counts only when the store proved it holds the
 * bytes; then the previous newest is marked as expirable and the store's marker is written if
 * missing. The temporary snapshot is removed on every path; on failure nothing a restore would
 * pick is left in the store and `state` is unchanged.
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
  try {
    // The store's newest key and its marker are read while the snapshot is taken: the requests
    // hide behind the copy. (A writer between the LIST and the upload is the same race as one
    // just after it: the next backup sees it.) Catch now, rethrow below: never unhandled.
    const listing = settle(deps.store.newest(1));
    // A marker that cannot be read now is looked for again when it is written (putMarker).
    const marker = state.marked ? undefined : deps.store.marker().catch(() => undefined);
    const { checked, ...snap } = await takeSnapshot(opts.db, tmp, snapSignal);
    let [newest] = await unwrap(listing);
    if (await marker) state.marked = true;
    const seen = state.attempted?.includes(newest?.key ?? "")
      ? "own"
      : compareWithKnown(state.knownNewest, newest);
    const foreign = seen === "foreign" ? newest : undefined;
    if (foreign) reportForeign(opts, state.knownNewest, foreign);
    // An upload of this process that landed although it was aborted or unproven: upload again.
    if (snap.sha256 === state.lastSha256 && seen !== "missing" && seen !== "own") {
      state.knownNewest = newest?.key ?? null;
      const ms = deps.clock.now() - started;
      log.info("backup unchanged: {bytes} bytes identical to the last backup, no upload", {
        event: "backup_unchanged",
        bytes: snap.size,
        ms,
      });
      return { outcome: "unchanged", bytes: snap.size, ms, foreign };
    }
    const meta: BackupMeta = {
      ...snap,
      createdAt: new Date(started).toISOString(),
      version: VERSION,
      machine: opts.machine,
      checked: "quick_check", // true of every object that becomes visible: put awaits `checked`
    };
    const key = await retry(async (attempt) => {
      if (attempt > 1) [newest] = await deps.store.newest(1);
      const next = backupKey(
        orderTime(deps.clock.now(), newest?.createdAt.getTime()),
        opts.machine,
      );
      state.attempted = [...(state.attempted ?? []).slice(-15), next];
      await deps.store.put(next, tmp, meta, { signal, ready: checked });
      return next;
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
    await afterUpload(opts, deps, state, newest);
    const ms = deps.clock.now() - started;
    log.info("backup finished: {key}, {bytes} bytes in {duration}", {
      event: "backup_finished",
      key,
      bytes: snap.size,
      ms,
      duration: formatDuration(ms),
      store: deps.store.location,
    });
    return { outcome: "uploaded", key, bytes: snap.size, ms, foreign };
  } finally {
    done.abort();
    await removeTemp(tmp);
  }
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
 * How the store's newest backup compares with the one this process last saw: the same (or
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

/**
 * Marks the previous newest backup as expirable and writes the store's marker once per process.
 * Never throws: the backup is already stored; a failure here is logged and tried again later.
 */
async function afterUpload(
  o: BackupOptions,
  deps: BackupDeps,
  state: BackupState,
  previous: BackupInfo | undefined,
): Promise<void> {
  const supersede = previous
    ? deps.store.supersede(previous.key).catch((err) =>
      log.warn("could not mark {key} as superseded (it will not expire): {error}", {
        event: "supersede_failed",
        key: previous.key,
        error: oneLine(err),
      })
    )
    : undefined;
  await Promise.all([supersede, ensureMarker(o, deps, state)]);
}

/** Writes the store's marker unless this process knows it is there; never throws. */
async function ensureMarker(o: BackupOptions, deps: BackupDeps, state: BackupState) {
  if (state.marked) return;
  try {
    await deps.store.putMarker({
      format: STORE_FORMAT,
      createdAt: new Date(deps.clock.now()).toISOString(),
      machine: o.machine,
      version: VERSION,
    });
    state.marked = true;
  } catch (err) {
    log.warn("could not write the store's marker (retried at the next backup): {error}", {
      event: "marker_failed",
      error: oneLine(err),
    });
  }
}
