/**
 * The store protocol against S3 answers that are wrong rather than failing (issue 10): lifeboat
 * run as a process, a fault proxy in front of moto. Each step is one case of the issue; the cases
 * of damaged bytes are in protocol_s3_damage_test.ts.
 */
import assert from "node:assert/strict";
import { DeleteObjectCommand, GetObjectTaggingCommand } from "@aws-sdk/client-s3";
import { SUPERSEDED_TAG } from "../src/store/store.ts";
import { assertOneLineError, restoreOk, runLifeboat, spawnLifeboat } from "../testkit/cli.ts";
import { backedUp, proxiedTest, scene as kitScene } from "../testkit/scene.ts";
import { is, type S3Proxy } from "../testkit/s3_proxy.ts";
import type { LocalS3 } from "../testkit/moto.ts";
import { spawnWithMetrics } from "../testkit/ports.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { addRow, makeDb, readRows } from "../testkit/sqlite.ts";

let s3: LocalS3;
let proxy: S3Proxy;

/** A fresh bucket and directory; lifeboat talks to S3 through the proxy. */
const scene = () => kitScene({ s3, proxy, name: "protocol", restoreAttempts: 2 });

/** Deletes exactly what the bucket's lifecycle rule may delete: backups tagged as superseded. */
async function expireSuperseded(bucket: string): Promise<string[]> {
  const c = s3.client();
  const expired: string[] = [];
  for (const Key of await s3.keys(bucket)) {
    const { TagSet } = await c.send(new GetObjectTaggingCommand({ Bucket: bucket, Key }));
    if (TagSet?.some((t) => t.Key === SUPERSEDED_TAG.key && t.Value === SUPERSEDED_TAG.value)) {
      await c.send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      expired.push(Key);
    }
  }
  return expired;
}

const XML = "application/xml";
const listing = (bucket: string, prefix: string, extra = "") =>
  `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>${bucket}</Name>` +
  `<Prefix>${prefix}</Prefix><KeyCount>0</KeyCount><MaxKeys>3</MaxKeys>${extra}</ListBucketResult>`;

proxiedTest("protocol against S3", async (t, started) => {
  ({ s3, proxy } = started);
  await t.step(
    "a 200 that is not a listing (HTML, empty, truncated without token, another bucket) is exit 1 and the app never starts",
    async () => {
      const { dir, env, bucket } = await backedUp(await scene(), 10);
      const answers: [string, string, string][] = [
        ["an HTML page", "<html><body>Welcome to the portal</body></html>", "text/html"],
        ["an empty body", "", "text/plain"],
        [
          "a truncated listing without a continuation token",
          listing(bucket, "db/backups/", "<IsTruncated>true</IsTruncated>"),
          XML,
        ],
        ["a listing of another bucket", listing("other", "db/backups/"), XML],
      ];
      for (const [what, body, contentType] of answers) {
        proxy.faults.length = 0;
        proxy.faults.push({
          match: is.list,
          action: { kind: "reply", status: 200, body, contentType },
        });
        const target = `${dir}/${crypto.randomUUID()}/app.db`;
        const marker = `${dir}/${crypto.randomUUID()}`;
        const r = await runLifeboat([
          "watch",
          "--db",
          target,
          "--",
          "/bin/sh",
          "-c",
          `touch ${marker}`,
        ], env);
        assert.equal(r.code, 1, `${what}: ${r.stderr}`);
        assert.match(r.lines.at(-1)!, /cannot read s3:\/\/|not a listing of/, what);
        await assert.rejects(Deno.stat(target), Deno.errors.NotFound, what);
        await assert.rejects(Deno.stat(marker), Deno.errors.NotFound, `${what}: app started`);
      }
    },
  );

  await t.step(
    "a store whose backups are gone but whose manifest remains is exit 1, unless --allow-empty",
    async () => {
      const { dir, env, bucket } = await backedUp(await scene(), 10);
      // Every copy of the data: the backups and the kept copy (a custom endpoint keeps one).
      for (const Key of [...await s3.backupKeys(bucket), "db/kept/app.sqlite3"]) {
        await s3.client().send(new DeleteObjectCommand({ Bucket: bucket, Key }));
      }
      const r = await runLifeboat(["restore", "--db", `${dir}/a/app.db`], env);
      assertOneLineError(
        r,
        1,
        /holds no backup of app, but the store's manifest says it had some.*--allow-empty/,
      );
      await assert.rejects(Deno.stat(`${dir}/a/app.db`), Deno.errors.NotFound);
      const flag = await runLifeboat(
        ["restore", "--allow-empty", "--db", `${dir}/b/app.db`],
        env,
      );
      assert.equal(flag.code, 0, flag.stderr);
      const envVar = await runLifeboat(["restore", "--db", `${dir}/c/app.db`], {
        ...env,
        LIFEBOAT_ALLOW_EMPTY: "1",
      });
      assert.equal(envVar.code, 0, envVar.stderr);
      assert.match(envVar.stderr, /WARN.*starting fresh \(--allow-empty\) although/);
    },
  );

  await t.step(
    "an idle app's only backup survives the lifecycle rule; only superseded backups expire",
    async () => {
      const { dir, db, bucket, env: base } = await scene();
      // The AWS design: a rule that expires tagged objects only (no kept copy).
      const env = { ...base, LIFEBOAT_RETENTION: "tags" };
      makeDb(db, 10);
      addRow(db, "v1");
      const w = spawnLifeboat(["watch", "--db", db, "--interval", "1s"], env);
      await w.waitForLine(/backup finished/);
      await w.waitForCount(/backup unchanged/, 2);
      assert.equal(proxy.requests.filter(is.put).length, 1, "an idle watch made one upload");
      assert.deepEqual(await expireSuperseded(bucket), [], "the newest backup expired");
      await restoreOk(`${dir}/idle/app.db`, env);
      assert.equal(readRows(`${dir}/idle/app.db`).at(-1), "v1");

      // The next backup of the data that continued from v1 (the same process) supersedes it.
      const [v1] = await s3.backupKeys(bucket);
      addRow(db, "v2");
      await w.waitForCount(/backup finished/, 2);
      assert.equal((await w.stop()).code, 0);
      assert.deepEqual(await expireSuperseded(bucket), [v1], "exactly the superseded one");
      const left = await s3.keys(bucket);
      assert.equal(left.filter((k) => k.endsWith(".sqlite3")).length, 1);
      assert.ok(left.includes("db/lifeboat.json"), "the manifest never expires");
      await restoreOk(`${dir}/r/app.db`, env);
      assert.equal(readRows(`${dir}/r/app.db`).at(-1), "v2");
    },
  );

  await t.step(
    "1,001 foreign objects under the prefix (more than a page): restore sends one LIST per page of each place",
    async () => {
      const { dir, env, bucket } = await backedUp(await scene(), 10);
      // More than one LIST page (1,000 keys) of foreign objects, at the prefix's root: the
      // place of 0.1's backups, which restore lists too.
      const names = Array.from({ length: 1001 }, (_, i) => `db/0-export-${i}.csv`);
      await s3.putObjects(bucket, names);
      proxy.requests.length = 0;
      await restoreOk(`${dir}/r/app.db`, env);
      const lists = new Map<string, number>();
      for (const r of proxy.requests.filter(is.list)) {
        const prefix = r.query.get("prefix") ?? "";
        lists.set(prefix, (lists.get(prefix) ?? 0) + 1);
      }
      assert.equal(lists.get("db/"), 2, "the root's 1,001 objects are two pages, not more");
      lists.delete("db/");
      assert.ok(lists.size > 0 && [...lists.values()].every((n) => n === 1), `${[...lists]}`);
    },
  );

  await t.step(
    "two machines on one prefix: an error names the other, and a metric says so",
    async () => {
      const { dir, env, db } = await scene();
      makeDb(db, 10);
      const other = `${dir}/other.db`;
      makeDb(other, 20);
      const { w: a, metricsPort: port } = await spawnWithMetrics(
        ["watch", "--db", db, "--interval", "1s"],
        { ...env, FLY_MACHINE_ID: "machine-a" },
      );
      await a.waitForLine(/backup finished/);
      // The same database (its name given) backed up from another machine.
      const b = await runLifeboat(["backup", "--db", `${other}=app`], {
        ...env,
        FLY_MACHINE_ID: "machine-b",
      });
      assert.equal(b.code, 0, b.stderr);
      const line = await a.waitForLine(/another writer shares this store/);
      assert.match(line, /ERROR/);
      assert.match(line, /machine-b/);
      // The metric is recorded as the backup that logged the line returns.
      let flagged = 0;
      for (let i = 0; i < 50 && flagged !== 1; i++) {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
        flagged = promValue(parseProm(text), "lifeboat_foreign_writer");
        if (flagged !== 1) await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(flagged, 1, "lifeboat_foreign_writer");
      assert.equal((await a.stop()).code, 0);
    },
  );
});
