/**
 * P6: how fast `lifeboat watch` reacts to SIGTERM while a large backup runs: once during the
 * snapshot (the SQLite copy in the worker) and once during the upload. Measured from the moment
 * the signal is sent to lifeboat's `signal` log line (its own timestamp, and when it arrived
 * here), to the aborted backup's `backup_aborted` line, and to the process exit after its final
 * backup.
 */
import {
  assertOk,
  BUCKET,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  peakRssKiB,
  sleep,
  spawn,
  withCountingS3,
} from "./lib.ts";

/** When the signal went in, which phase the backup was in. */
export type Phase = "snapshot" | "upload";

/** One SIGTERM: delays from sending it, in ms. */
export interface ShutdownRun {
  phase: Phase;
  /** Signal sent → lifeboat's `signal` log line timestamp (ms resolution). */
  toSignalLogMs: number;
  /** Signal sent → that line read from lifeboat's stderr here. */
  toSignalLineMs: number;
  /** Signal sent → `backup_aborted` line read here (the in-flight backup has stopped); NaN when
   * the backup had already finished. */
  toAbortedMs: number;
  /** Signal sent → process exit (after the final backup). */
  toExitMs: number;
  /** The final backup's own duration, from its log line. */
  finalBackupMs: number;
  exitCode: number;
  peakRssKiB: number;
}

/** All P6 runs on one database. */
export interface ShutdownResult {
  sizeMiB: number;
  runs: ShutdownRun[];
}

/** Sends SIGTERM to `lifeboat watch` mid-backup once per phase (× `runs`) on `db`. */
export async function benchSigterm(
  db: string,
  sizeMiB: number,
  runs: number,
  progress: (msg: string) => void,
): Promise<ShutdownResult> {
  const result: ShutdownResult = { sizeMiB, runs: [] };
  for (let run = 0; run < runs; run++) {
    for (const phase of ["snapshot", "upload"] as Phase[]) {
      await withCountingS3(undefined, async ({ proxy }) => {
        const watch = spawn([...lifeboatCmd(), "watch", "--interval", "1s"], {
          env: lifeboatEnv(proxy.endpoint, {
            LIFEBOAT_DB: db,
            LIFEBOAT_URL: `s3://${BUCKET}/sig`,
            LIFEBOAT_LOG_LEVEL: "debug",
          }),
          timeoutMs: 180_000 + sizeMiB * 300,
        });
        let peak = NaN;
        const poll = setInterval(() => {
          const v = peakRssKiB(watch.pid);
          if (Number.isFinite(v)) peak = v;
        }, 100);
        try {
          await watch.waitForLine(/backup started/, 60_000);
          if (phase === "upload") {
            await proxy.waitFor(["UploadPart", "PutObject"], 120_000);
          }
          await sleep(phase === "snapshot" ? 300 : 500);
          const sentEpoch = Date.now();
          const sent = performance.now();
          Deno.kill(watch.pid, "SIGTERM");
          const sig = await watch.waitForLine(/"event":"signal"/, 30_000);
          const aborted = await watch.waitForLine(/"event":"backup_aborted"/, 60_000)
            .catch(() => undefined); // the backup may have finished before the signal
          const end = await watch.done;
          assertOk("lifeboat watch", end);
          const events = logEvents(end.stderr);
          const sigTime = Date.parse(String(events.find((e) => e.event === "signal")?.time));
          const final = events.filter((e) => e.event === "backup_finished").pop();
          const r: ShutdownRun = {
            phase,
            toSignalLogMs: sigTime - sentEpoch,
            toSignalLineMs: sig.t - sent,
            toAbortedMs: aborted ? aborted.t - sent : NaN,
            toExitMs: end.endedAt - sent,
            finalBackupMs: Number(final?.ms),
            exitCode: end.code,
            peakRssKiB: peak,
          };
          result.runs.push(r);
          progress(
            `SIGTERM during ${phase}: signal logged after ${r.toSignalLogMs} ms ` +
              `(line read after ${r.toSignalLineMs.toFixed(1)} ms), backup aborted after ` +
              `${Math.round(r.toAbortedMs)} ms, exit after ${Math.round(r.toExitMs)} ms ` +
              `(final backup ${Math.round(r.finalBackupMs)} ms)`,
          );
        } finally {
          clearInterval(poll);
        }
      });
    }
  }
  return result;
}
