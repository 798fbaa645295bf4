/** `lifeboat backup`: one consistent snapshot of the database, written as a new backup. */
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { logger } from "../log.ts";
import { takeSnapshot } from "../snapshot/snapshot.ts";
import { backupKey } from "../store/keys.ts";
import type { BackupMeta, Store } from "../store/store.ts";
import { removeTemp, tempPathBeside } from "../tempfiles.ts";
import { VERSION } from "../version.ts";

const log = logger("backup");

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

/** State kept across backups of one process: the last uploaded snapshot's checksum. */
export interface BackupState {
  lastSha256?: string;
}

/** How one backup ended. */
export interface BackupResult {
  outcome: "uploaded" | "unchanged";
  key?: string;
  bytes: number;
  ms: number;
  sha256: string;
}

/**
 * Snapshots `db` and uploads it under a new key, unless it is byte-identical to the last
 * backup this process uploaded. The temporary snapshot is removed on every path; on failure
 * nothing is visible in the store and `state` is unchanged.
 */
export async function backupOnce(
  opts: BackupOptions,
  deps: BackupDeps,
  state: BackupState,
  signal?: AbortSignal,
): Promise<BackupResult> {
  const started = deps.clock.now();
  const tmp = tempPathBeside(opts.db);
  log.debug("backup started: {db}", { db: opts.db });
  try {
    const snap = await takeSnapshot(opts.db, tmp, signal);
    if (snap.sha256 === state.lastSha256) {
      const ms = deps.clock.now() - started;
      log.info("backup unchanged: {bytes} bytes identical to the last backup, no upload", {
        event: "backup_unchanged",
        bytes: snap.size,
        ms,
      });
      return { outcome: "unchanged", bytes: snap.size, ms, sha256: snap.sha256 };
    }
    const key = backupKey(started, opts.machine);
    const meta: BackupMeta = {
      ...snap,
      createdAt: new Date(started).toISOString(),
      version: VERSION,
      machine: opts.machine,
    };
    await deps.store.put(key, tmp, meta, signal);
    state.lastSha256 = snap.sha256;
    const ms = deps.clock.now() - started;
    log.info("backup finished: {key}, {bytes} bytes in {duration}", {
      event: "backup_finished",
      key,
      bytes: snap.size,
      ms,
      duration: formatDuration(ms),
      store: deps.store.location,
    });
    return { outcome: "uploaded", key, bytes: snap.size, ms, sha256: snap.sha256 };
  } finally {
    await removeTemp(tmp);
  }
}
