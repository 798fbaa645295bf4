/** End to end: lifeboat run as a process against moto (S3) and a directory store. */
import assert from "node:assert/strict";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import {
  assertOneLineError,
  baseEnv,
  restoreOk,
  ROOT,
  runLifeboat,
  spawnLifeboat,
  tempsLeft,
} from "../testkit/cli.ts";
import { type LocalS3, startLocalS3 } from "../testkit/moto.ts";
import { closedPort } from "../testkit/ports.ts";
import { addRow, integrity, makeDb, readRows } from "../testkit/sqlite.ts";
import { parseKey } from "../src/store/keys.ts";
import { backedUp, LOOSE, scene as kitScene, tempDir } from "../testkit/scene.ts";

let s3: LocalS3;

/** A fresh bucket and working directory for one test, with lifeboat's environment. */
const scene = () => kitScene({ s3, name: "cli-test", prefix: "apps/demo" });

/** The stand-in app (tests/fixtures/child.ts) on `db`, as a `watch -- CMD`. */
const child = (
  db: string,
  ...args: string[]
) => [Deno.execPath(), "run", "-A", `${ROOT}/tests/fixtures/child.ts`, db, ...args];

Deno.test({
  name: "cli",
  ...LOOSE,
  fn: async (t) => {
    s3 = await startLocalS3();
    for (const [k, v] of Object.entries(s3.env)) Deno.env.set(k, v);
    try {
      await t.step("backup then restore on a new machine gives the same rows", async () => {
        const { dir, env, bucket } = await scene();
        makeDb(`${dir}/app.db`, 500);
        const b = await runLifeboat(["backup", "--db", `${dir}/app.db`], env);
        assert.equal(b.code, 0, b.stderr);
        assert.match(
          b.stderr,
          /backup finished: backups\/daily\/app\/\d{13}-.*\.sqlite3, \d+ bytes/,
        );
        const r = await restoreOk(`${dir}/new/app.db`, env);
        assert.match(
          r.stderr,
          /restored backups\/daily\/app\/\d{13}-\S+ from s3:\/\/.*: \d+ bytes in/,
        );
        assert.deepEqual(readRows(`${dir}/new/app.db`), readRows(`${dir}/app.db`));
        assert.equal(integrity(`${dir}/new/app.db`), "ok");
        // The object carries its metadata and the restored file is byte-identical to it.
        const [key] = await s3.backupKeys(bucket, "apps/demo/");
        const obj = await s3.client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const body = await obj.Body!.transformToByteArray();
        assert.deepEqual(body, await Deno.readFile(`${dir}/new/app.db`));
        assert.equal(obj.ServerSideEncryption, undefined, "no SSE header sent by default");
        const m = obj.Metadata!;
        for (
          const f of [
            "sha256",
            "size",
            "page-size",
            "page-count",
            "created-at",
            "version",
            "machine",
          ]
        ) {
          assert.ok(m[f], `metadata ${f} missing`);
        }
        assert.equal(Number(m.size), body.length);
        assert.equal(Number(m["page-size"]) * Number(m["page-count"]), body.length);
        // The temporary snapshot is gone.
        assert.deepEqual(tempsLeft(dir), []);
      });

      await t.step("every backup is a new key and restore takes the newest", async () => {
        const { dir, env, bucket, db } = await scene();
        makeDb(db, 10);
        for (let i = 0; i < 3; i++) {
          addRow(db, `version-${i}`);
          const b = await runLifeboat(["backup", "--db", db], env);
          assert.equal(b.code, 0, b.stderr);
        }
        const keys = await s3.backupKeys(bucket, "apps/demo/");
        assert.equal(keys.length, 3);
        assert.equal(new Set(keys).size, 3);
        await restoreOk(`${dir}/b/app.db`, env);
        assert.equal(readRows(`${dir}/b/app.db`).at(-1), "version-2");
      });

      await t.step("restore skips an existing database and leaves it untouched", async () => {
        const { dir, env, db } = await scene();
        makeDb(db, 5);
        assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
        const other = `${dir}/other.db`;
        makeDb(other, 1);
        const before = await Deno.readFile(other);
        const r = await runLifeboat(["restore", "--db", other], env);
        assert.equal(r.code, 0);
        assert.match(r.stderr, /exists, restore skipped/);
        assert.deepEqual(await Deno.readFile(other), before);
        // Another file name is another database: it takes app.db's backups when given its name.
        const f = await runLifeboat(["restore", "--force", "--db", `${other}=app`], env);
        assert.equal(f.code, 0, f.stderr);
        assert.equal(readRows(other).length, 5);
      });

      await t.step("an empty store is a confirmed fresh start", async () => {
        const { dir, env } = await scene();
        const r = await restoreOk(`${dir}/app.db`, env);
        assert.match(r.stderr, /no backup of app found in s3:\/\/\S+, starting fresh/);
        await assert.rejects(Deno.stat(`${dir}/app.db`), Deno.errors.NotFound);
      });

      await t.step("an unreachable store is exit 1, never a fresh start", async () => {
        const { dir, env } = await scene();
        const dead = `http://127.0.0.1:${closedPort()}`;
        const r = await runLifeboat(["restore", "--db", `${dir}/app.db`], {
          ...env,
          AWS_ENDPOINT_URL_S3: dead,
          LIFEBOAT_RESTORE_ATTEMPTS: "2",
        });
        assert.equal(r.code, 1, r.stderr);
        assert.match(
          r.lines.at(-1)!,
          /ERROR.*cannot read s3:\/\/.*nothing was restored/,
        );
        assert.match(r.stderr, /retrying/);
        await assert.rejects(Deno.stat(`${dir}/app.db`), Deno.errors.NotFound);
        const w = await runLifeboat(
          [
            "watch",
            "--db",
            `${dir}/app.db`,
            "--",
            Deno.execPath(),
            "eval",
            "Deno.writeTextFileSync('" + dir + "/started', 'x')",
          ],
          { ...env, AWS_ENDPOINT_URL_S3: dead, LIFEBOAT_RESTORE_ATTEMPTS: "1" },
        );
        assert.equal(w.code, 1);
        await assert.rejects(
          Deno.stat(`${dir}/started`),
          Deno.errors.NotFound,
          "the app was started",
        );
      });

      await t.step(
        "a corrupt newest backup is rejected and the previous one restored",
        async () => {
          const { dir, env, bucket } = await backedUp(await scene(), 50, ["good", "newest"]);
          const keys = await s3.backupKeys(bucket, "apps/demo/");
          await s3.damagePage2(bucket, keys[0]);
          const r = await restoreOk(`${dir}/r/app.db`, env);
          assert.match(
            r.stderr,
            /failed verification 3 times \(SHA-256 mismatch\); trying an older one/,
          );
          assert.equal(readRows(`${dir}/r/app.db`).at(-1), "good");
        },
      );

      await t.step("watch uploads once, then skips unchanged snapshots", async () => {
        const { env, bucket, db } = await scene();
        makeDb(db, 20);
        const w = spawnLifeboat(["watch", "--db", db, "--interval", "1s"], env);
        await w.waitForLine(/backup finished/);
        await w.waitForLine(/backup unchanged/);
        const res = await w.stop();
        assert.equal(res.code, 0, res.stderr);
        assert.equal((await s3.backupKeys(bucket, "apps/demo/")).length, 1);
        assert.equal(res.lines.filter((l) => /backup finished/.test(l)).length, 1);
        // The start line names the database it watches (it once said "watching undefined").
        assert.ok(res.lines.some((l) => l.includes(`watching ${db}; backing up every 1.0s`)));
      });

      await t.step(
        "watch -- app: writes up to SIGTERM reach the final backup; exit code returns",
        async () => {
          const { dir, env, db } = await scene();
          makeDb(db, 3);
          const w = spawnLifeboat(
            ["watch", "--db", db, "--interval", "1h", "--", ...child(db, "wait", "42")],
            env,
          );
          await w.waitForLine(/^child ready$/);
          addRow(db, "written-just-before-sigterm");
          const res = await w.stop();
          assert.equal(res.code, 42, res.stderr);
          assert.match(res.stderr, /received SIGTERM, shutting down: forwarding to the app/);
          assert.match(res.stderr, /the app exited with code 42/);
          await restoreOk(`${dir}/next/app.db`, env);
          const rows = readRows(`${dir}/next/app.db`);
          assert.ok(rows.includes("written-just-before-sigterm"), rows.join(","));
          assert.ok(rows.includes("written-on-sigterm"), rows.join(","));
        },
      );

      await t.step("watch -- app that exits by itself: final backup, same exit code", async () => {
        const { dir, env, db } = await scene();
        const res = await runLifeboat(
          ["watch", "--db", db, "--", ...child(db, "exit", "3")],
          env,
        );
        assert.equal(res.code, 3, res.stderr);
        assert.match(res.stderr, /starting fresh/);
        await restoreOk(`${dir}/next/app.db`, env);
        assert.deepEqual(readRows(`${dir}/next/app.db`), ["written-before-exit"]);
      });

      await t.step(
        "watch: an empty database file (opened, never written) is nothing to back up",
        async () => {
          const { env, bucket, db } = await scene();
          await Deno.writeFile(db, new Uint8Array());
          const res = await runLifeboat(
            ["watch", "--db", db, "--", Deno.execPath(), "eval", "0"],
            env,
          );
          assert.equal(res.code, 0, res.stderr);
          assert.match(res.stderr, /final backup skipped: .* does not exist yet or is empty/);
          assert.deepEqual(await s3.keys(bucket), []);
        },
      );

      await t.step("bad input: one line, exit 2, nothing written", async () => {
        const { dir, env, bucket } = await scene();
        await Deno.writeTextFile(`${dir}/notes.txt`, "hello, not a database");
        makeDb(`${dir}/app.db`, 1);
        const cases: [string[], Record<string, string>, RegExp][] = [
          [["backup", "--db", `${dir}/missing.db`], {}, /database .*missing\.db does not exist/],
          [["backup", "--db", `${dir}/notes.txt`], {}, /notes\.txt is not a SQLite database/],
          [
            ["backup", "--db", `${dir}/app.db`, "--url", "s3://No_Such"],
            {},
            /invalid S3 bucket name/,
          ],
          [
            ["backup", "--db", `${dir}/app.db`, "--url", "ftp://x/y"],
            {},
            /unsupported store URL scheme/,
          ],
          [
            ["watch", "--db", `${dir}/app.db`, "--interval", "soon"],
            {},
            /--interval "soon" is not a duration/,
          ],
          [
            ["watch", "--db", `${dir}/app.db`],
            { LIFEBOAT_INTERVAL: "5" },
            /LIFEBOAT_INTERVAL "5" is not a duration/,
          ],
          [["backup"], { LIFEBOAT_DB: "" }, /no database given/],
          [["backup", "--nope"], {}, /unknown option '--nope'/],
          [
            ["restore", "--db", `${dir}/x.db`],
            { LIFEBOAT_LOG_LEVEL: "loud" },
            /LIFEBOAT_LOG_LEVEL=loud/,
          ],
        ];
        for (const [args, extra, re] of cases) {
          const r = await runLifeboat(args, { ...env, ...extra });
          assertOneLineError(r, 2, re);
        }
        assert.deepEqual(await s3.backupKeys(bucket, "apps/demo/"), []);
      });
    } finally {
      await s3.stop();
    }
  },
});

Deno.test("directory store: the same round trip with no AWS at all", async () => {
  const dir = await tempDir();
  const env = baseEnv({ LIFEBOAT_URL: `file://${dir}/store` });
  makeDb(`${dir}/app.db`, 100);
  // Like a bucket, the directory must exist: a mistyped path never starts a new store.
  const missing = await runLifeboat(["backup", "--db", `${dir}/app.db`], env);
  assertOneLineError(missing, 1, /store directory \S+ does not exist\. Create it/);
  await Deno.mkdir(`${dir}/store`);
  const b = await runLifeboat(["backup", "--db", `${dir}/app.db`], env);
  assert.equal(b.code, 0, b.stderr);
  const place = "backups/daily/app"; // a lone database's first backup, under its file's name
  const names = [...Deno.readDirSync(`${dir}/store/${place}`)].map((e) => `${place}/${e.name}`);
  assert.equal(names.filter((x) => parseKey(x)).length, 1);
  assert.ok(Deno.statSync(`${dir}/store/lifeboat.json`).isFile, "the manifest is written");
  await restoreOk(`${dir}/new.db=app`, env);
  assert.deepEqual(readRows(`${dir}/new.db`), readRows(`${dir}/app.db`));
});
