/**
 * The SQLite checks, where they run now: a backup's quick_check overlaps its upload but the
 * object becomes visible only once it passed; a restore whose SHA-256 matches skips a second
 * quick_check when the metadata says the bytes passed one, unless LIFEBOAT_RESTORE_CHECK asks.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  GetObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { FileStore } from "../src/store/file.ts";
import { metaFor, randomFile, TEST_DIR, testKey } from "../testkit/backup_files.ts";
import { runLifeboat } from "../testkit/cli.ts";
import { proxiedTest, s3StoreTest, scene, tempDir } from "../testkit/scene.ts";
import { addRow, growDb, makeDb, readRows } from "../testkit/sqlite.ts";

const MiB = 1024 * 1024;

s3StoreTest(
  "put: a multipart upload whose `ready` rejects after its parts were sent stores nothing; one that resolves late becomes visible only then",
  "gate",
  { LIFEBOAT_S3_PART_SIZE_MB: "5" },
  async ({ store, local, dir }) => {
    let partsDone = 0;
    let onPart = () => {};
    store.client.middlewareStack.add((next, ctx) => async (args) => {
      const out = await next(args);
      if (ctx.commandName === "UploadPartCommand") {
        partsDone++;
        onPart();
      }
      return out;
    }, { step: "initialize", name: "partsDone" });
    const { path, bytes } = await randomFile(dir, 12 * MiB); // 3 parts of 5 MiB
    const meta = metaFor(bytes, createHash("sha256").update(bytes).digest("hex"));

    // Rejected once every part is in: the multipart upload is aborted, nothing is listed.
    let reject = (_: Error) => {};
    const damaged = new Promise<void>((_, r) => (reject = r));
    onPart = () => partsDone === 3 && reject(new Error("quick_check failed"));
    await assert.rejects(
      store.put(testKey(Date.now(), "m1"), path, meta, { ready: damaged }),
      /quick_check failed/,
    );
    assert.equal(partsDone, 3, "the parts were sent while the check ran");
    assert.deepEqual((await store.list(TEST_DIR, 5)).backups, []);
    const c = local.client();
    const pending = await c.send(new ListMultipartUploadsCommand({ Bucket: "gate" }));
    assert.equal(pending.Uploads?.length ?? 0, 0, "the aborted upload is still pending");
    c.destroy();

    // Resolved late: the object appears only after `ready`.
    partsDone = 0;
    let resolve = () => {};
    const passed = new Promise<void>((r) => (resolve = r));
    const allParts = new Promise<void>((r) => (onPart = () => partsDone === 3 && r()));
    const key = testKey(Date.now() + 1000, "m1");
    const put = store.put(key, path, meta, { ready: passed });
    await allParts;
    assert.deepEqual(
      (await store.list(TEST_DIR, 5)).backups,
      [],
      "visible before the check passed",
    );
    resolve();
    await put;
    assert.deepEqual((await store.list(TEST_DIR, 5)).backups.map((b) => b.key), [key]);
  },
);

s3StoreTest(
  "put: a check that fails while the upload's requests are in flight is the error thrown, not their aborts (the CI race)",
  "gate-race",
  { LIFEBOAT_S3_PART_SIZE_MB: "5" },
  async ({ store, dir }) => {
    // Each request named here waits until the check has failed, then goes on with its abort
    // signal already fired: the order that once made a damaged database read as a timeout.
    let held = "CreateMultipartUploadCommand";
    let checkFailed = Promise.resolve();
    store.client.middlewareStack.add((next, ctx) => async (args) => {
      if (ctx.commandName === held) await checkFailed.catch(() => {});
      return await next(args);
    }, { step: "initialize", name: "holdUntilCheckFailed" });
    const { path, bytes } = await randomFile(dir, 12 * MiB);
    const meta = metaFor(bytes, createHash("sha256").update(bytes).digest("hex"));
    for (const command of ["CreateMultipartUploadCommand", "UploadPartCommand"]) {
      held = command;
      let reject = (_: Error) => {};
      checkFailed = new Promise<void>((_, r) => (reject = r));
      setTimeout(() => reject(new Error("database is damaged (quick_check)")), 50);
      await assert.rejects(
        store.put(testKey(Date.now(), "m1"), path, meta, { ready: checkFailed }),
        (err: Error) => {
          assert.match(err.message, /damaged/, `while ${command} was in flight: ${err.message}`);
          return true;
        },
      );
    }
    assert.deepEqual((await store.list(TEST_DIR, 5)).backups, []);
  },
);

Deno.test("put: the directory store links a backup into place only once `ready` resolved", async () => {
  const dir = await tempDir();
  try {
    const store = new FileStore(`${dir}/store`);
    await Deno.mkdir(`${dir}/store`);
    const { path, bytes } = await randomFile(dir, 10_000);
    const meta = metaFor(bytes, createHash("sha256").update(bytes).digest("hex"));
    await assert.rejects(
      store.put(
        testKey(Date.now(), "m1"),
        path,
        meta,
        { ready: Promise.reject(new Error("no")) },
      ),
      /no/,
    );
    assert.deepEqual((await store.list(TEST_DIR, 5)).backups, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

proxiedTest("backup and restore: where the SQLite checks run", async (t, { s3, proxy }) => {
  const client = s3.client();
  const sceneOf = (name: string) => scene({ s3, proxy, name, restoreAttempts: 3 });
  /** Rewrites the newest backup with its pages 2–3 damaged, its metadata changed by `edit`. */
  const damageNewest = async (bucket: string, edit: (m: Record<string, string>) => void) => {
    const [newest] = await s3.backupKeys(bucket);
    const obj = await client.send(new GetObjectCommand({ Bucket: bucket, Key: newest }));
    const bytes = await obj.Body!.transformToByteArray();
    bytes.fill(0x55, 4096, 3 * 4096);
    const Metadata = { ...obj.Metadata, sha256: createHash("sha256").update(bytes).digest("hex") };
    edit(Metadata);
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: newest, Body: bytes, Metadata }));
  };

  await t.step("a damaged database larger than a part: exit 1, nothing stored", async () => {
    const { env, db, bucket } = await sceneOf("damaged");
    makeDb(db, 50, false);
    growDb(db, 12);
    const bytes = await Deno.readFile(db);
    bytes.fill(0x47, 4096 * 3, 4096 * 6);
    await Deno.writeFile(db, bytes);
    const r = await runLifeboat(["backup", "--db", db], { ...env, LIFEBOAT_S3_PART_SIZE_MB: "5" });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.lines.at(-1)!, /(damaged|malformed).*Nothing was uploaded/);
    assert.deepEqual(await s3.backupKeys(bucket), []);
  });

  await t.step("backups record that they passed quick_check", async () => {
    const { env, db, bucket } = await sceneOf("recorded");
    makeDb(db, 20);
    assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
    const [key] = await s3.backupKeys(bucket);
    const obj = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await obj.Body!.transformToByteArray();
    assert.equal(obj.Metadata?.checked, "quick_check");
  });

  await t.step(
    "restore trusts a recorded quick_check only by default; LIFEBOAT_RESTORE_CHECK and old backups run it",
    async () => {
      const { dir, env, db, bucket } = await sceneOf("trusted");
      makeDb(db, 50);
      addRow(db, "good");
      assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
      addRow(db, "newest");
      assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
      // A writer that recorded a check its bytes did not pass: by default, restored as is.
      await damageNewest(bucket, () => {});
      const trusting = await runLifeboat(["restore", "--db", `${dir}/a/app.db`], env);
      assert.equal(trusting.code, 0, trusting.stderr);
      assert.doesNotMatch(trusting.stderr, /failed verification/);
      // Asked for, quick_check and integrity_check run and reject it: the older one is restored.
      for (const check of ["quick_check", "integrity_check"]) {
        const r = await runLifeboat(["restore", "--db", `${dir}/${check}/app.db`], {
          ...env,
          LIFEBOAT_RESTORE_CHECK: check,
        });
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stderr, new RegExp(`failed verification 3 times \\(${check}: `));
        assert.equal(readRows(`${dir}/${check}/app.db`).at(-1), "good");
      }
      // A backup of lifeboat 0.1 records no check: quick_check runs.
      await damageNewest(bucket, (m) => delete m.checked);
      const old = await runLifeboat(["restore", "--db", `${dir}/old/app.db`], env);
      assert.match(old.stderr, /failed verification 3 times \(quick_check: /);
      assert.equal(readRows(`${dir}/old/app.db`).at(-1), "good");
    },
  );

  await t.step("LIFEBOAT_RESTORE_CHECK takes only its three values", async () => {
    const r = await runLifeboat(["restore", "--db", "/tmp/never.db"], {
      LIFEBOAT_URL: "file:///tmp/never",
      LIFEBOAT_RESTORE_CHECK: "fast",
    });
    assert.equal(r.code, 2);
    assert.match(
      r.lines.at(-1)!,
      /LIFEBOAT_RESTORE_CHECK=fast is not valid.*auto, quick_check, integrity_check/,
    );
  });
  client.destroy();
});
