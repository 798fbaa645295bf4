/**
 * Request counts through a counting proxy in front of moto_server.
 * P5: ListObjectsV2 requests `lifeboat restore` makes to find the newest of 10,000 backups (and
 * what `aws s3 ls`, the cron recipe's way to find it, makes). P7: write requests per interval
 * of `lifeboat watch --interval 1s` on an idle database.
 */
import { backupKey } from "../src/store/keys.ts";
import {
  assertOk,
  awsCliEnv,
  BUCKET,
  copyFile,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  peakRssKiB,
  s3Client,
  sleep,
  spawn,
  timed,
  withCountingS3,
} from "./lib.ts";
import { WRITE_OPS } from "../testkit/s3_proxy.ts";
import { putObjects } from "../testkit/moto.ts";

/** P5's outcome: requests by operation for lifeboat's restore and for `aws s3 ls`. */
export interface ListResult {
  sizeMiB: number;
  backups: number;
  lifeboat: { counts: Record<string, number>; ms: number; restoredKey: string };
  awsLs: { counts: Record<string, number>; ms: number };
}

/** Puts `n` tiny objects under `prefix`, named like backups older than now. */
async function populate(endpoint: string, prefix: string, n: number): Promise<void> {
  const now = Date.now();
  const keys = Array.from(
    { length: n },
    (_, i) => `${prefix}/${backupKey(now - (i + 1) * 60_000, "bench-old")}`,
  );
  const client = s3Client(endpoint);
  try {
    await putObjects(client, BUCKET, keys);
  } finally {
    client.destroy();
  }
}

/** P5: 10,000 old backups plus one real newest one; counts the LISTs restore needs. */
export async function benchListNewest(
  db: string,
  sizeMiB: number,
  backups: number,
  progress: (msg: string) => void,
): Promise<ListResult> {
  return await withCountingS3("list", async ({ dir, s3, proxy }) => {
    const t0 = performance.now();
    await populate(s3.endpoint, "many", backups);
    progress(`put ${backups} old backup keys in ${Math.round(performance.now() - t0)} ms`);
    const made = await timed([...lifeboatCmd(), "backup"], {
      env: lifeboatEnv(s3.endpoint, { LIFEBOAT_DB: db, LIFEBOAT_URL: `s3://${BUCKET}/many` }),
      timeoutMs: 120_000,
    });
    assertOk("lifeboat backup", made);
    const newest = String(logEvents(made.stderr).find((e) => e.event === "backup_finished")?.key);

    proxy.reset();
    const restore = await timed([...lifeboatCmd(), "restore"], {
      env: lifeboatEnv(proxy.endpoint, {
        LIFEBOAT_DB: `${dir}/restored.sqlite3`,
        LIFEBOAT_URL: `s3://${BUCKET}/many`,
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
      ["aws", "s3", "ls", `s3://${BUCKET}/many/backups/`, "--endpoint-url", proxy.endpoint],
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
  });
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
  return await withCountingS3("idle", async ({ dir, s3, proxy }) => {
    const app = `${dir}/app.sqlite3`;
    await copyFile(db, app);
    const seed = await timed([...lifeboatCmd(), "backup"], {
      env: lifeboatEnv(s3.endpoint, { LIFEBOAT_DB: app, LIFEBOAT_URL: `s3://${BUCKET}/idle` }),
      timeoutMs: 120_000,
    });
    assertOk("lifeboat backup", seed);
    await Deno.remove(app);

    proxy.reset();
    const watch = spawn([...lifeboatCmd(), "watch", "--interval", "1s"], {
      env: lifeboatEnv(proxy.endpoint, { LIFEBOAT_DB: app, LIFEBOAT_URL: `s3://${BUCKET}/idle` }),
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
