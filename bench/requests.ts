/**
 * Request counts through a counting proxy in front of moto_server.
 * P5: ListObjectsV2 requests `lifeboat restore` makes to find the newest of 10,000 backups (and
 * what `aws s3 ls`, the cron recipe's way to find it, makes). P7: write requests per interval
 * of `lifeboat watch --interval 1s` on an idle database.
 */
import {
  assertOk,
  awsCliEnv,
  BUCKET,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  peakRssKiB,
  sleep,
  spawn,
  timed,
  withCountingS3,
} from "./lib.ts";
import type { LocalS3 } from "../testkit/moto.ts";
import { backupKey } from "../src/store/keys.ts";
import { type S3Proxy, WRITE_OPS } from "../testkit/s3_proxy.ts";

/** P5's outcome: requests by operation for lifeboat's restore and for `aws s3 ls`. */
export interface ListResult {
  sizeMiB: number;
  backups: number;
  lifeboat: { counts: Record<string, number>; ms: number; restoredKey: string };
  awsLs: { counts: Record<string, number>; ms: number };
}

/** The store name of the benchmark's database, whatever its file. */
const DB_NAME = "bench";

/** The keys of `n` tiny stand-ins for old backups under `prefix`, a minute apart, all before now. */
function oldBackupKeys(prefix: string, n: number): string[] {
  const now = Date.now();
  return Array.from(
    { length: n },
    (_, i) => `${prefix}/${backupKey(DB_NAME, "recent", now - (i + 1) * 60_000, "bench-old")}`,
  );
}

/** What a measurement after the seeding backup gets (see afterOneBackup). */
interface Seeded {
  /** The empty scratch directory `workDir(name)`. */
  dir: string;
  /** The counting proxy, its counts reset after the seeding backup. */
  proxy: S3Proxy;
  /** `s3://BUCKET/<name>`, where the backup is. */
  url: string;
  /** The key of the seeding backup (from its `backup_finished` log line). */
  newest: string;
}

/**
 * Runs `measure` on a fresh counting S3 (withCountingS3) once `lifeboat backup` of `db` has
 * stored one real backup under `s3://BUCKET/<name>`, straight to the server (after `before`, on
 * the empty bucket); the proxy counts only what `measure` makes lifeboat do.
 */
async function afterOneBackup<T>(
  name: string,
  db: string,
  measure: (x: Seeded) => Promise<T>,
  before?: (s3: LocalS3) => Promise<void>,
): Promise<T> {
  return await withCountingS3(name, async ({ dir, s3, proxy }) => {
    await before?.(s3);
    const url = `s3://${BUCKET}/${name}`;
    const made = await timed([...lifeboatCmd(), "backup"], {
      env: lifeboatEnv(s3.endpoint, { LIFEBOAT_DB: `${db}=${DB_NAME}`, LIFEBOAT_URL: url }),
      timeoutMs: 120_000,
    });
    assertOk("lifeboat backup", made);
    const newest = String(logEvents(made.stderr).find((e) => e.event === "backup_finished")?.key);
    proxy.reset();
    return await measure({ dir, proxy, url, newest });
  });
}

/** P5: 10,000 old backups plus one real newest one; counts the LISTs restore needs. */
export async function benchListNewest(
  db: string,
  sizeMiB: number,
  backups: number,
  progress: (msg: string) => void,
): Promise<ListResult> {
  const fill = async (s3: LocalS3) => {
    const t0 = performance.now();
    await s3.putObjects(BUCKET, oldBackupKeys("list", backups));
    progress(`put ${backups} old backup keys in ${Math.round(performance.now() - t0)} ms`);
  };
  return await afterOneBackup("list", db, async ({ dir, proxy, url, newest }) => {
    const restore = await timed([...lifeboatCmd(), "restore"], {
      env: lifeboatEnv(proxy.endpoint, {
        LIFEBOAT_DB: `${dir}/restored.sqlite3=${DB_NAME}`,
        LIFEBOAT_URL: url,
      }),
      timeoutMs: 120_000,
    });
    assertOk("lifeboat restore", restore);
    const done = logEvents(restore.stderr).find((e) => e.event === "restore_finished");
    const lifeboat = { counts: proxy.counts(), ms: restore.ms, restoredKey: String(done?.key) };
    if (lifeboat.restoredKey !== newest) {
      throw new Error(`restore picked ${lifeboat.restoredKey}, not the newest ${newest}`);
    }

    proxy.reset();
    const ls = await timed(
      ["aws", "s3", "ls", `${url}/backups/recent/${DB_NAME}/`, "--endpoint-url", proxy.endpoint],
      { env: awsCliEnv(), timeoutMs: 120_000 },
    );
    assertOk("aws s3 ls", ls);
    const lines = ls.stdout.trim().split("\n").length;
    if (lines !== backups + 1) throw new Error(`aws s3 ls listed ${lines} objects`);
    const awsLs = { counts: proxy.counts(), ms: ls.ms };
    progress(
      `restore among ${backups + 1}: lifeboat ${lifeboat.counts.ListObjectsV2 ?? 0} LIST, ` +
        `aws s3 ls ${awsLs.counts.ListObjectsV2 ?? 0} LIST`,
    );
    return { sizeMiB, backups, lifeboat, awsLs };
  }, fill);
}

/** P7's outcome: intervals observed and the requests made after the start-up restore. */
export interface IdleResult {
  sizeMiB: number;
  intervalMs: number;
  /** Periodic backups that found nothing new (`backup_unchanged`), final one included. */
  unchanged: number;
  uploaded: number;
  /** Write requests (PutObject, UploadPart, Create/CompleteMultipartUpload) after the restore. */
  writes: number;
  /** Every request after the restore, by operation. */
  counts: Record<string, number>;
  /** Peak RSS (KiB) of the idle `watch` process, read just before its SIGTERM. */
  rssKiB: number;
  /** Requests of the start-up restore itself, by operation. */
  restoreCounts: Record<string, number>;
}

/** P7: restore on start (as on fly.io), then N idle intervals and SIGTERM; counts writes. */
export async function benchIdleWrites(
  db: string,
  sizeMiB: number,
  intervals: number,
  progress: (msg: string) => void,
): Promise<IdleResult> {
  return await afterOneBackup("idle", db, async ({ dir, proxy, url }) => {
    // Not there yet: watch restores it on start, as on a new fly.io machine.
    const app = `${dir}/app.sqlite3`;
    const watch = spawn([...lifeboatCmd(), "watch", "--interval", "1s"], {
      env: lifeboatEnv(proxy.endpoint, { LIFEBOAT_DB: app, LIFEBOAT_URL: url }),
      timeoutMs: 120_000,
    });
    await watch.waitForLine(/"event":"watch_started"/, 60_000);
    const restoreCounts = proxy.counts();
    proxy.reset();
    for (let seen = 0; seen < intervals;) {
      await sleep(200);
      seen = watch.lines.filter((l) => /"event":"backup_(unchanged|finished)"/.test(l.line)).length;
      if (watch.lines.some((l) => /"event":"(failed|backup_failed)"/.test(l.line))) break;
    }
    const rssKiB = peakRssKiB(watch.pid);
    Deno.kill(watch.pid, "SIGTERM");
    const end = await watch.done;
    assertOk("lifeboat watch", end);
    const events = logEvents(end.stderr);
    const counts = proxy.counts();
    const writes = Object.entries(counts)
      .filter(([op]) => WRITE_OPS.has(op))
      .reduce((a, [, n]) => a + n, 0);
    const r: IdleResult = {
      sizeMiB,
      intervalMs: 1000,
      unchanged: events.filter((e) => e.event === "backup_unchanged").length,
      uploaded: events.filter((e) => e.event === "backup_finished").length,
      writes,
      counts,
      restoreCounts,
      rssKiB,
    };
    progress(
      `idle watch: ${r.unchanged} unchanged, ${r.uploaded} uploaded, ${writes} write requests, ` +
        `peak RSS ${Math.round(rssKiB / 1024)} MiB`,
    );
    return r;
  });
}
