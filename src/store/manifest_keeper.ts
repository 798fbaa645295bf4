/**
 * Keeping the store's manifest (manifest.ts) listing the databases a process backs up: rewritten
 * whenever it is missing or lacks one of them, rebuilt from the backups when it was lost.
 */
import { scanDatabases } from "./history.ts";
import type { Layout } from "./keys.ts";
import {
  addLayout,
  claimRoot,
  currentOf,
  entryOf,
  MANIFEST_FORMAT,
  readManifest,
  setPath,
  updateManifest,
} from "./manifest.ts";
import type { Store } from "./store.ts";

/**
 * Keeps the store's manifest listing the databases of one process, as backups run: each call
 * reads the manifest (it may have been deleted, or rewritten by another process) and writes it
 * back only when the database, its path or a layout is missing. Calls run one at a time. Never
 * throws: a failure is logged and tried again at the next call.
 */
export class ManifestKeeper {
  #queue: Promise<unknown> = Promise.resolve();

  /** A keeper of `store`'s manifest for a process on `machine`, dating entries by `now()`. */
  constructor(
    private readonly store: Store,
    private readonly machine: string,
    private readonly now: () => number,
  ) {}

  /**
   * Makes sure the manifest lists database `name` at `path` with `layouts` (`heir`: the run's
   * lone database, given without a name); resolves with an error message when it could not
   * (logged by the caller), else undefined.
   */
  ensure(
    name: string,
    path: string,
    layouts: Layout[],
    heir = false,
  ): Promise<string | undefined> {
    const run = this.#queue.then(async () => {
      try {
        const read = await readManifest(this.store);
        // A manifest lost (or never written): what it listed is rebuilt from the backups.
        const scanned = read?.manifest.format === MANIFEST_FORMAT
          ? []
          : await scanDatabases(this.store);
        await updateManifest(this.store, (m) => {
          const now = new Date(this.now());
          const next = currentOf(m, now, this.machine);
          for (const d of m?.format === MANIFEST_FORMAT ? [] : scanned) {
            const entry = entryOf(next, d.name, now);
            for (const l of d.layouts) addLayout(entry, l);
            if (d.path && !entry.path) setPath(entry, d.path);
          }
          const db = entryOf(next, name, now);
          let changed = next.format !== m?.format || !m.databases.some((d) => d.name === name);
          // The first manifest of a store that lifeboat ≤ 0.2 may have kept a database in,
          // written for a database run alone without a name: it is that database (as 0.2 had
          // it), up to now; a root backup ordered later is a downgrade's, nobody's yet.
          if (heir && m?.format !== MANIFEST_FORMAT) claimRoot(next, name, now.getTime(), now);
          for (const l of layouts) changed = addLayout(db, l) || changed;
          changed = setPath(db, path) || changed;
          return changed ? next : undefined;
        }, read ?? null);
        return undefined;
      } catch (err) {
        return err instanceof Error ? err.message : String(err);
      }
    });
    this.#queue = run;
    return run;
  }
}
