/**
 * P4: how much a backup slows the app's writer. Another process commits small transactions
 * every 5 ms on a working copy of the database; the p99 commit latency while lifeboat backs it
 * up is compared with the p99 while nothing runs (windows before and after, same process). The
 * cron recipe's `sqlite3 .backup` is tried in the same run, under a time limit.
 */
import {
  assertOk,
  awsCliEnv,
  BUCKET,
  copyFile,
  freshS3,
  lifeboatCmd,
  lifeboatEnv,
  median,
  percentile,
  removeDb,
  scriptCmd,
  scriptEnv,
  sleep,
  spawn,
  timed,
  workDir,
} from "./lib.ts";

/** One run: p99 (and p50, max) commit latency per window, and what the backups did. */
export interface LatencyRun {
  idle: WindowStats;
  /** Back-to-back lifeboat backups (`backups` of them, median `backupMs` each). */
  lifeboat: WindowStats & { backupMs: number; backups: number };
  /** The cron recipe's `.backup` under the same writer; `finished` false when it hit the limit. */
  cron?: WindowStats & { backupMs: number; finished: boolean };
}

/** Commit latencies observed in one window of time. */
export interface WindowStats {
  commits: number;
  p50: number;
  p99: number;
  max: number;
}

/** All runs at one size. */
export interface LatencyResult {
  sizeMiB: number;
  periodMs: number;
  runs: LatencyRun[];
}

const PERIOD_MS = 5;
const IDLE_MS = 3000;

function stats(lat: number[]): WindowStats {
  return {
    commits: lat.length,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    max: lat.length ? Math.max(...lat) : NaN,
  };
}

/**
 * Runs the writer against a copy of `db` and measures `runs` times: idle, during a lifeboat
 * backup, and (when `cronLimitMs` > 0, first run only) during the cron recipe's `.backup`.
 */
export async function benchCommitLatency(
  db: string,
  sizeMiB: number,
  runs: number,
  cronLimitMs: number,
  progress: (msg: string) => void,
): Promise<LatencyResult> {
  const dir = await workDir(`latency-${sizeMiB}`);
  const copy = `${dir}/app.sqlite3`;
  const result: LatencyResult = { sizeMiB, periodMs: PERIOD_MS, runs: [] };
  await copyFile(db, copy);
  try {
    for (let run = 0; run < runs; run++) {
      const s3 = await freshS3();
      const writer = spawn([...scriptCmd("writer.ts"), copy, String(PERIOD_MS)], {
        env: scriptEnv(),
        stdin: "piped",
        timeoutMs: 600_000,
      });
      try {
        await writer.waitForLine(/writer: started/, 30_000);
        await sleep(1000);
        const windows: Record<string, [number, number][]> = { idle: [], lifeboat: [], cron: [] };
        const mark = async (name: string, fn: () => Promise<void>) => {
          const from = Date.now();
          await fn();
          windows[name].push([from, Date.now()]);
        };
        await mark("idle", () => sleep(IDLE_MS));
        // Backups back to back until the window is as long as an idle one, so that its p99
        // rests on as many commits (a 10 MiB backup alone lasts only ~80 commits).
        const backupMs: number[] = [];
        await mark("lifeboat", async () => {
          const until = Date.now() + IDLE_MS;
          do {
            const t = await timed([...lifeboatCmd(), "backup"], {
              env: lifeboatEnv(s3.endpoint, {
                LIFEBOAT_DB: copy,
                LIFEBOAT_URL: `s3://${BUCKET}/lb`,
              }),
              timeoutMs: 120_000 + sizeMiB * 300,
            });
            assertOk("lifeboat backup under load", t);
            backupMs.push(t.ms);
          } while (Date.now() < until);
        });
        await sleep(500);
        let cron: { ms: number; finished: boolean } | undefined;
        if (cronLimitMs > 0 && run === 0) {
          await mark("cron", async () => {
            const tmp = `${dir}/cron-tmp.sqlite3`;
            const t = await timed(["sqlite3", copy, `.backup ${tmp}`], {
              env: awsCliEnv(),
              timeoutMs: cronLimitMs,
            });
            cron = { ms: t.ms, finished: t.code === 0 };
            await removeDb(tmp);
          });
          await sleep(500);
        }
        await mark("idle", () => sleep(IDLE_MS));
        await writer.proc.stdin.close();
        const out = await writer.done;
        assertOk("writer", out);
        const samples = JSON.parse(out.stdout) as [number, number][];
        const within = (name: string) =>
          samples.filter(([at]) => windows[name].some(([a, b]) => at >= a && at <= b)).map((
            [, ms],
          ) => ms);
        const r: LatencyRun = {
          idle: stats(within("idle")),
          lifeboat: {
            ...stats(within("lifeboat")),
            backupMs: median(backupMs),
            backups: backupMs.length,
          },
        };
        if (cron) r.cron = { ...stats(within("cron")), backupMs: cron.ms, finished: cron.finished };
        result.runs.push(r);
        progress(
          `${sizeMiB} MiB run ${run + 1}: commit p99 idle ${r.idle.p99.toFixed(3)} ms, ` +
            `during lifeboat backup ${r.lifeboat.p99.toFixed(3)} ms` +
            (r.cron
              ? `, during sqlite3 .backup ${r.cron.p99.toFixed(3)} ms` +
                (r.cron.finished ? "" : ` (.backup did not finish in ${cronLimitMs} ms)`)
              : ""),
        );
      } finally {
        await writer.proc.stdin.close().catch(() => {});
        await writer.done;
        await s3.stop();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return result;
}
