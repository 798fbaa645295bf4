/**
 * `lifeboat watch`'s run in the long-lived process: the metrics endpoint and the supervisor loop,
 * with the restore, backups and drills in job processes (commands/isolated.ts). It evaluates no
 * store, SDK or SQLite module: those run in the job processes (issue #22).
 */
import type { Run } from "./cli.ts";
import { systemClock } from "./clock.ts";
import { childJobs } from "./commands/isolated.ts";
import { watch } from "./commands/watch.ts";
import { Metrics } from "./metrics.ts";
import { serveMetrics } from "./metrics_server.ts";
import { processSignals } from "./signals.ts";
import { storeLocation } from "./store/settings.ts";

/** `lifeboat watch`: resolves with watch's exit code; throws (exit 1) when the restore failed. */
export const watchRun: Run = async (cfg) => {
  const metrics = new Metrics(systemClock, cfg, cfg.databases.map((d) => d.name));
  // A release machine serves nothing: it runs the release command alone.
  const server = cfg.metricsAddr && !cfg.releaseCommand
    ? serveMetrics(cfg.metricsAddr, metrics)
    : undefined;
  try {
    return await watch(cfg, {
      location: storeLocation(cfg.store),
      clock: systemClock,
      signals: processSignals,
      metrics,
      // The restore, backups and drills run in short-lived processes: the SDK never stays in
      // this one. A restore's files are installed here, under this process's locks.
      jobs: childJobs(
        cfg,
        async () => (await import("./snapshot/install_file.ts")).installDatabase,
      ),
    });
  } finally {
    await server?.close();
  }
};
