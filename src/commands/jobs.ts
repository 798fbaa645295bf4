/**
 * The work `watch` hands out: rounds of backups and restore drills, run either here (tests, the
 * child process itself) or in a short-lived child process (`isolated.ts`), so that the AWS SDK
 * and a backup's buffers never stay in the long-lived process.
 */
import { type BackupDeps, backupOnce, type BackupOptions, type BackupResult } from "./backup.ts";
import type { BackupState } from "./backup.ts";
import { type DrillDeps, drillOnce, type DrillOptions, type DrillResult } from "./drill.ts";
import {
  restoreAll,
  type RestoreDeps,
  type RestoreOptions,
  type RestoreResult,
} from "./restore.ts";
import { mapBounded, withDbLabel } from "./several.ts";
import type { RunDb } from "../store/history.ts";

/** One database of a round of backups: what it needs, and its state (updated in place). */
export interface BackupItem {
  db: BackupOptions;
  state: BackupState;
}

/** How one backup of a round ended: its result, or the error it failed with. */
export type BackupEnd = { ok: true; result: BackupResult } | { ok: false; error: unknown };

/** Where `watch`'s backups and drills run. */
export interface Jobs {
  /**
   * Backs up every item, at most `limit` at once, each under its name as the log label; calls
   * `ended` once per item as it ends, with its state already updated. Never throws: a backup
   * that could not run (its process crashed) ends with an error.
   */
  backups(
    items: readonly BackupItem[],
    limit: number,
    signal: AbortSignal,
    ended: (index: number, end: BackupEnd) => void,
  ): Promise<void>;
  /** One restore drill (drill.ts `drillOnce`); throws when `signal` aborts or it could not run. */
  drill(o: DrillOptions, signal: AbortSignal): Promise<DrillResult>;
  /**
   * The restore at start (restore.ts `restoreAll`): throws as it does, and (exit 1) when its
   * process died; either way no temporary file is left.
   */
  restore(dbs: readonly RunDb[], o: RestoreOptions): Promise<RestoreResult[]>;
}

/** Jobs run in this process, against `deps`' store; never throws beyond what `Jobs` says. */
export function inProcessJobs(deps: BackupDeps & DrillDeps & RestoreDeps): Jobs {
  return {
    async backups(items, limit, signal, ended) {
      await mapBounded(
        items.map((item, index) => ({ item, index })),
        limit,
        ({ item, index }) =>
          withDbLabel(item.db.name, async () => {
            let end: BackupEnd;
            try {
              end = { ok: true, result: await backupOnce(item.db, deps, item.state, signal) };
            } catch (error) {
              end = { ok: false, error };
            }
            ended(index, end);
          }),
      );
    },
    drill: (o, signal) => drillOnce(o, deps, signal),
    restore: (dbs, o) => restoreAll(dbs, o, deps),
  };
}
