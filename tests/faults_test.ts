/** S3 faults injected between lifeboat and the local S3: retries, clean aborts, verified restores. */
import assert from "node:assert/strict";
import { restoreOk, runLifeboat, spawnLifeboat, tempsLeft } from "../testkit/cli.ts";
import {
  backedUp as kitBackedUp,
  proxiedTest,
  type Scene,
  scene as kitScene,
} from "../testkit/scene.ts";
import { type FaultAction, is, type S3Proxy, type SeenRequest } from "../testkit/s3_proxy.ts";
import type { LocalS3 } from "../testkit/moto.ts";
import { growDb, makeDb, readRows } from "../testkit/sqlite.ts";

let s3: LocalS3;
let proxy: S3Proxy;
let injectedTotal = 0;

let n = 0;

async function scene() {
  n++;
  injectedTotal += proxy.injected;
  return await kitScene({ s3, proxy, name: "faults", restoreAttempts: 3 });
}

/** A scene whose database of `rows` rows is backed up once per tag (no tags: once), before any fault. */
const backedUp = async (rows: number, tags?: string[]) => kitBackedUp(await scene(), rows, tags);

/** Arms `action` on the next request matching `match`, once. */
function once(match: (r: SeenRequest) => boolean, action: FaultAction): void {
  proxy.faults.push({ match, action, times: 1 });
}

/** Answers requests matching `match` with an S3 error, `times` times (default: always). */
function answer(match: (r: SeenRequest) => boolean, status: number, code: string, times?: number) {
  proxy.faults.push({ match, action: { kind: "status", status, code }, times });
}

/** Restores the scene's store into `dir/r/app.db`. */
function restore(sc: Scene, extra: Record<string, string> = {}) {
  return runLifeboat(["restore", "--db", `${sc.dir}/r/app.db`], { ...sc.env, ...extra });
}

proxiedTest("faults", async (t, started) => {
  ({ s3, proxy } = started);
  await t.step("503 SlowDown on PUT is retried with backoff and the backup lands", async () => {
    const { db, env, bucket } = await scene();
    makeDb(db, 100);
    answer(is.put, 503, "SlowDown", 2);
    const r = await runLifeboat(["backup", "--db", db], env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.injected, 2);
    assert.equal((await s3.backupKeys(bucket)).length, 1);
  });

  await t.step(
    "a multipart upload that finally fails is aborted: nothing to restore",
    async () => {
      const { dir, db, env, bucket } = await scene();
      makeDb(db, 0);
      growDb(db, 20); // multipart: parts are 8 MiB

      answer(is.complete, 500, "InternalError");
      const r = await runLifeboat(["backup", "--db", db], env);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(proxy.injected >= 1);
      assert.ok(proxy.requests.some(is.part), "the upload was not multipart");
      assert.deepEqual(await s3.keys(bucket), []);
      assert.equal(await s3.pendingUploads(bucket), 0, "multipart upload left behind");
      assert.deepEqual(tempsLeft(dir), []);
      const fresh = await runLifeboat(["restore", "--db", `${dir}/r/app.db`], env);
      assert.match(fresh.stderr, /no backup of app found/);
    },
  );

  await t.step(
    "watch keeps going through failed backups and succeeds when the fault clears",
    async () => {
      const { dir, env, bucket } = await scene();
      makeDb(`${dir}/app.db`, 10);
      // 9 = 3 uploads (a backup's own attempts) × 3 SDK attempts each: the first backup fails.
      answer(is.put, 500, "InternalError", 9);
      const w = spawnLifeboat(["watch", "--db", `${dir}/app.db`, "--interval", "1s"], env);
      await w.waitForLine(/backup failed: .*will retry at the next interval/);
      await w.waitForLine(/backup finished/);
      const res = await w.stop();
      assert.equal(res.code, 0, res.stderr);
      assert.equal((await s3.backupKeys(bucket)).length, 1);
    },
  );

  await t.step(
    "a truncated download fails verification and is read again: the newest is restored",
    async () => {
      const { dir, env } = await backedUp(200, ["older", "newer"]);
      once(is.get, { kind: "truncate", toBytes: 5000 });
      const r = await restoreOk(`${dir}/r/app.db`, env);
      assert.match(
        r.stderr,
        /failed verification \(size 5000 bytes, metadata says \d+\); downloading it again/,
      );
      assert.equal(readRows(`${dir}/r/app.db`).at(-1), "newer");
      assert.deepEqual(tempsLeft(`${dir}/r`), []);
    },
  );

  await t.step(
    "when every download is truncated restore exits 1 and touches nothing",
    async () => {
      const sc = await backedUp(200);
      const dir = sc.dir;
      proxy.faults.push({ match: is.get, action: { kind: "truncate", toBytes: 4096 } });
      const r = await restore(sc);
      assert.equal(r.code, 1, r.stderr);
      // One candidate, the only backup, tried and rejected (the message names each one tried).
      assert.match(
        r.lines.at(-1)!,
        /none of the newest backups passed verification \(backups\/daily\/app\/[^;]+\)\./,
      );
      await assert.rejects(Deno.stat(`${dir}/r/app.db`), Deno.errors.NotFound);
      assert.deepEqual(tempsLeft(`${dir}/r`), []);
    },
  );

  await t.step("a connection reset mid-download is retried", async () => {
    const sc = await backedUp(2000);
    once(is.get, { kind: "reset", afterBytes: 10_000 });
    const r = await restore(sc);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.injected, 1);
    assert.deepEqual(readRows(`${sc.dir}/r/app.db`), readRows(sc.db));
  });

  await t.step("a stalled request times out and is retried (LIFEBOAT_S3_TIMEOUT)", async () => {
    const { dir, env, bucket, db } = await scene();
    makeDb(db, 20);
    const quick = { ...env, LIFEBOAT_S3_TIMEOUT: "1s" };
    proxy.faults.push({ match: is.put, action: { kind: "stall", ms: 120_000 }, times: 1 });
    const b = await runLifeboat(["backup", "--db", db], quick);
    assert.equal(b.code, 0, b.stderr);
    proxy.faults.push({ match: is.list, action: { kind: "stall", ms: 120_000 }, times: 1 });
    const before = proxy.requests.length;
    await restoreOk(`${dir}/r/app.db`, quick);
    assert.equal(proxy.injected, 2);
    // Each stalled request was abandoned by the client and sent again: the backup's PUT, and
    // the restore's stalled LIST (of one place; every other place is listed once).
    assert.equal(proxy.requests.filter(is.put).length, 2);
    const lists = proxy.requests.slice(before).filter(is.list).map((r) => r.query.get("prefix"));
    const again = lists.filter((p, i) => lists.indexOf(p) !== i);
    assert.equal(again.length, 1, `one LIST sent twice: ${lists.join(", ")}`);
    assert.deepEqual(readRows(`${dir}/r/app.db`), readRows(db));
    assert.equal((await s3.backupKeys(bucket)).length, 1);
  });

  await t.step("a download whose body stalls midway times out and is retried", async () => {
    const sc = await backedUp(2000);
    once(is.get, { kind: "hang", afterBytes: 10_000 });
    const r = await restore(sc, { LIFEBOAT_S3_TIMEOUT: "1s" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /the download stalled: no data for 1000 ms/);
    assert.equal(proxy.requests.filter(is.get).length, 2);
    assert.deepEqual(readRows(`${sc.dir}/r/app.db`), readRows(sc.db));
  });

  await t.step(
    "503 on LIST during restore is retried; a store that stays down is exit 1",
    async () => {
      const { dir, env } = await backedUp(20);
      answer(is.list, 503, "SlowDown", 4);
      await restoreOk(`${dir}/a/app.db`, env);
      answer(is.list, 503, "SlowDown");
      const down = await runLifeboat(["restore", "--db", `${dir}/b/app.db`], {
        ...env,
        LIFEBOAT_RESTORE_ATTEMPTS: "2",
      });
      assert.equal(down.code, 1, down.stderr);
      await assert.rejects(Deno.stat(`${dir}/b/app.db`), Deno.errors.NotFound);
    },
  );
  injectedTotal += proxy.injected;
  console.log(
    `faults: ${n} scenarios, ${injectedTotal} faults injected, all recovered or refused cleanly`,
  );
});
