/**
 * The store protocol against S3 when bytes are damaged or missing on the way or at rest (issue 10):
 * lifeboat run as a process, a fault proxy in front of moto. The other cases of the issue are in
 * protocol_s3_test.ts.
 */
import assert from "node:assert/strict";
import { restoreOk, runLifeboat, spawnLifeboat } from "../testkit/cli.ts";
import { backedUp, proxiedTest, scene as kitScene } from "../testkit/scene.ts";
import { is, type S3Proxy, startS3Proxy } from "../testkit/s3_proxy.ts";
import type { LocalS3 } from "../testkit/moto.ts";
import { addRow, growDb, makeDb, readRows } from "../testkit/sqlite.ts";

let s3: LocalS3;
let proxy: S3Proxy;

/** A fresh bucket and directory; lifeboat talks to S3 through the proxy. */
const scene = () => kitScene({ s3, proxy, name: "damage", restoreAttempts: 2 });

proxiedTest("protocol against S3: damaged bytes", async (t, started) => {
  ({ s3, proxy } = started);
  await t.step(
    "a PUT answered 200 without an ETag (nothing stored) is not a backup",
    async () => {
      const { env, db, bucket } = await scene();
      makeDb(db, 10);
      proxy.faults.push({ match: is.put, action: { kind: "reply", status: 200, body: "" } });
      const r = await runLifeboat(["backup", "--db", db], env);
      assert.equal(r.code, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /backup finished/);
      assert.match(r.lines.at(-1)!, /without an ETag/);
      assert.deepEqual(await s3.backupKeys(bucket), []);
      // Once, then the store answers properly: the retry lands and is verified.
      proxy.faults.length = 0;
      proxy.faults.push({
        match: is.put,
        action: { kind: "reply", status: 200, body: "" },
        times: 1,
      });
      const ok = await runLifeboat(["backup", "--db", db], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stderr, /upload failed \(attempt 1\), retrying/);
      assert.equal((await s3.backupKeys(bucket)).length, 1);
    },
  );

  for (
    const [what, size, match] of [["PutObject", 0, is.put], [
      "UploadPart",
      20,
      is.part,
    ]] as const
  ) {
    await t.step(
      `a ${what} body damaged in transit is refused (Content-MD5), retried, and lands intact`,
      async () => {
        const { dir, env, db } = await scene();
        makeDb(db, 50);
        if (size) growDb(db, size);
        addRow(db, "last");
        proxy.faults.push({ match, action: { kind: "corruptRequest" }, times: 1 });
        const b = await runLifeboat(["backup", "--db", db], env);
        assert.equal(b.code, 0, b.stderr);
        assert.equal(proxy.injected, 1);
        assert.match(b.stderr, /BadDigest/);
        const r = await restoreOk(`${dir}/r/app.db`, env);
        assert.doesNotMatch(r.stderr, /failed verification/);
        assert.equal(readRows(`${dir}/r/app.db`).at(-1), "last");
      },
    );
    await t.step(
      `#21.4 a ${what} body damaged in transit on a store that ignores Content-MD5 (moto): the ETag shows it, the damaged bytes never count`,
      async () => {
        const { dir, env, db, bucket } = await scene();
        makeDb(db, 50);
        if (size) growDb(db, size);
        addRow(db, "last");
        proxy.faults.push({
          match,
          action: { kind: "corruptRequest", serverChecks: true },
          times: 1,
        });
        const b = await runLifeboat(["backup", "--db", db], env);
        assert.equal(b.code, 0, b.stderr);
        assert.equal(proxy.injected, 1);
        assert.doesNotMatch(b.stderr, /BadDigest/, "the server took the damaged body");
        const finished = b.stderr.split("\n").filter((l) => /backup finished/.test(l));
        assert.equal(finished.length, 1, b.stderr);
        const keys = await s3.backupKeys(bucket);
        if (what === "PutObject") {
          // Visible at once: read back, found different, and the backup went up again.
          assert.match(b.stderr, /holds different bytes than were sent/);
          assert.equal(keys.length, 2, keys.join(", "));
          assert.ok(!finished[0].includes(keys[1]), "the damaged one is not reported finished");
        } else {
          // Not visible yet: the part went up again before CompleteMultipartUpload.
          assert.match(b.stderr, /not the MD5 of the bytes sent .*sending it again/);
          assert.equal(keys.length, 1, keys.join(", "));
        }
        const r = await restoreOk(`${dir}/r/app.db`, env);
        assert.doesNotMatch(r.stderr, /failed verification/);
        assert.equal(readRows(`${dir}/r/app.db`).at(-1), "last");
      },
    );
  }

  await t.step(
    "#21.4 a store whose ETags are not MD5s: read back once, intact, said once, and the backup counts",
    async () => {
      // A proxy that answers every PutObject with an ETag of its own (as stores with other
      // ETag schemes do) in front of moto.
      const other = startS3Proxy(s3.endpoint, {
        transforms: [(res, seen) => {
          if (!is.put(seen) || !res.headers.has("etag")) return res;
          const headers = new Headers(res.headers);
          headers.set("etag", `"${"0123456789abcdef".repeat(2)}"`);
          return new Response(res.body, { status: res.status, headers });
        }],
      });
      try {
        const { dir, env, db, bucket } = await kitScene({ s3, proxy: other, name: "etags" });
        makeDb(db, 50);
        addRow(db, "last");
        const b = await runLifeboat(["backup", "--db", db], env);
        assert.equal(b.code, 0, b.stderr);
        assert.equal(b.stderr.match(/ETags are not the MD5 of the bytes it stores/g)?.length, 1);
        assert.doesNotMatch(b.stderr, /different bytes|upload failed/);
        assert.equal((await s3.backupKeys(bucket)).length, 1);
        await restoreOk(`${dir}/r/app.db`, env);
        assert.equal(readRows(`${dir}/r/app.db`).at(-1), "last");
        // watch runs each round in a job process of its own: what the first learned is handed
        // on, so the store is read back once per run, not once per backup.
        const reads = () =>
          other.requests.filter((r) => is.get(r) && r.path.includes("/backups/")).length;
        const before = reads();
        const w = spawnLifeboat(["watch", "--db", db, "--interval", "1s"], {
          ...env,
          LIFEBOAT_DRILL_INTERVAL: "0",
        });
        for (let i = 1; i <= 3; i++) {
          addRow(db, `round ${i}`);
          await w.waitForCount(/backup finished/, i);
        }
        const res = await w.stop();
        assert.equal(res.code, 0, res.stderr);
        assert.equal(reads() - before, 1, "one read back for the whole run");
        assert.equal(res.stderr.match(/ETags are not the MD5/g)?.length, 1, res.stderr);
      } finally {
        await other.stop();
      }
    },
  );

  await t.step(
    "one flipped byte in a download is read again, not a fallback to an older backup",
    async () => {
      const { dir, env } = await backedUp(await scene(), 100, ["older", "newest"]);
      proxy.faults.push({ match: is.get, action: { kind: "flip", atByte: 5000 }, times: 1 });
      const r = await restoreOk(`${dir}/r/app.db`, env);
      assert.equal(proxy.injected, 1);
      assert.match(r.stderr, /SHA-256 mismatch\); downloading it again/);
      assert.doesNotMatch(r.stderr, /trying an older one/);
      assert.equal(readRows(`${dir}/r/app.db`).at(-1), "newest");
    },
  );

  await t.step(
    "after a fallback from a damaged newest backup, watch's first backup makes a sound one newest",
    async () => {
      const { dir, env, bucket } = await backedUp(await scene(), 50, ["good", "damaged"]);
      const [newest] = await s3.backupKeys(bucket);
      await s3.damagePage2(bucket, newest);
      const target = `${dir}/r/app.db`;
      const w = spawnLifeboat(["watch", "--db", target, "--interval", "1s"], env);
      await w.waitForLine(/trying an older one/);
      await w.waitForLine(/backup (finished|unchanged)/);
      const res = await w.stop();
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stderr, /backup finished/, "the restored data was uploaded again");
      const again = await restoreOk(`${dir}/again/app.db`, env);
      assert.doesNotMatch(again.stderr, /failed verification/, "the newest is sound again");
      assert.equal(readRows(`${dir}/again/app.db`).at(-1), "good");
    },
  );
});
