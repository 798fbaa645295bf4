/** The run's store as commands use it: the store, its retention and its manifest keeper. */
import { systemClock } from "./clock.ts";
import type { Config } from "./config.ts";
import { ManifestKeeper } from "./store/manifest_keeper.ts";
import { openStore } from "./store/open.ts";
import { Retention, retentionMode } from "./store/retention.ts";
import type { Store } from "./store/store.ts";

/** The run's store, with the retention and manifest keeping every backup does; makes no request. */
export function storeOf(
  cfg: Config,
): { store: Store; retention: Retention; manifest: ManifestKeeper } {
  const store = openStore(cfg.store, cfg.s3);
  const kind = cfg.store.kind === "file"
    ? { kind: "file" as const }
    : { kind: "s3" as const, endpoint: cfg.s3.endpoint };
  return {
    store,
    retention: new Retention(retentionMode(cfg.retention, kind), store),
    manifest: new ManifestKeeper(store, cfg.machine, () => systemClock.now()),
  };
}
