/**
 * The one-shot commands' runs (backup, restore, list, verify), loaded by cli.ts only when one of
 * them runs: they open the store, and with it its modules (`watch` never evaluates them).
 */
import type { Run } from "./cli.ts";
import { systemClock } from "./clock.ts";
import { backupOnce } from "./commands/backup.ts";
import { verifyDatabases } from "./commands/drill.ts";
import { listBackups, type ListFlags } from "./commands/list.ts";
import { restoreAll } from "./commands/restore.ts";
import { forEachDatabase } from "./commands/several.ts";
import type { Config } from "./config.ts";
import { configError } from "./errors.ts";
import { isHeir } from "./store/history.ts";
import { openStore } from "./store/open.ts";
import { storeOf } from "./stores.ts";

/** `lifeboat backup`: every database once; refused (exit 2) on a fly.io release machine. */
export const backupRun: Run = async (cfg) => {
  if (cfg.releaseCommand) {
    throw configError(
      "RELEASE_COMMAND is set: this is a fly.io release machine, whose database is a throwaway " +
        "copy; a backup from it would become the newest and hide the live machine's writes",
      "Back up from the app's machine; run migrations in the app's start command, under " +
        "`lifeboat watch -- …`, after the restore",
    );
  }
  const deps = { ...storeOf(cfg), clock: systemClock };
  await forEachDatabase(
    cfg.databases,
    cfg.backupConcurrency,
    "backup",
    (d) =>
      backupOnce(
        { db: d.path, name: d.name, machine: cfg.machine, heir: isHeir(d, cfg.databases) },
        deps,
        {},
      ),
  );
  return 0;
};

/** `lifeboat restore`: throws as `restoreAll` does. */
export const restoreRun: Run = async (cfg) => {
  // Every database at once: one slow store prefix does not delay the others.
  await restoreAll(cfg.databases, cfg, { store: openStore(cfg.store, cfg.s3), clock: systemClock });
  return 0;
};

/** `lifeboat verify`: resolves with 1 when a newest backup did not verify. */
export const verifyRun: Run = (cfg) =>
  verifyDatabases(cfg.databases, cfg, { store: openStore(cfg.store, cfg.s3), clock: systemClock });

/** `lifeboat list`: throws (exit 2) on a bad `--limit`, as `listBackups` does. */
export function listRun(cfg: Config, flags: ListFlags): Promise<number> {
  return listBackups(cfg, flags);
}
