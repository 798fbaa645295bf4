/**
 * Compatibility run (`deno task test:compat`): the Store contract and the CLI round trips against
 * a real S3 server (LIFEBOAT_COMPAT_ENDPOINT, e.g. radosgw from scripts/start-rgw.sh), or moto
 * when none is given. LIFEBOAT_BIN runs a compiled binary instead of `deno run` (CI does both).
 * Written against the Store interface and the CLI only: backups are found by listing the prefix
 * and matching `.sqlite3`, whatever the key layout.
 */
import assert from "node:assert/strict";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { parseStoreUrl, s3Options } from "../../src/config.ts";
import { s3Settings } from "../../src/store/open.ts";
import { S3Store } from "../../src/store/s3.ts";
import {
  assertOneLineError,
  baseEnv,
  LIFEBOAT_CMD,
  runLifeboat,
  type RunResult,
  spawnLifeboat,
} from "../../testkit/cli.ts";
import { metaFor, randomFile, TEST_DIR, testKey } from "../../testkit/backup_files.ts";
import { is, startS3Proxy } from "../../testkit/s3_proxy.ts";
import { addRow, growDb, integrity, makeDb, readRows } from "../../testkit/sqlite.ts";
import { type CompatServer, compatServer } from "./server.ts";
import { LOOSE, tempDir } from "../../testkit/scene.ts";

const MiB = 1024 * 1024;
const server: CompatServer = await compatServer();
console.log(`compat: ${server.name} at ${server.endpoint}; lifeboat = ${LIFEBOAT_CMD.join(" ")}`);
globalThis.addEventListener("unload", () => void server.stop());

/** lifeboat's own S3 variables for this server: the shared AWS_* ones stay unset. */
function s3Env(): Record<string, string> {
  return {
    LIFEBOAT_S3_ENDPOINT: server.endpoint,
    LIFEBOAT_S3_REGION: "us-east-1",
    LIFEBOAT_ACCESS_KEY_ID: server.accessKey,
    LIFEBOAT_SECRET_ACCESS_KEY: server.secretKey,
  };
}

/** The environment of one lifeboat run against `url`. */
function cliEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return baseEnv({ ...s3Env(), LIFEBOAT_URL: url, LIFEBOAT_RESTORE_ATTEMPTS: "2", ...extra });
}

/**
 * The backups under `prefix`, found by listing: any key ending in `.sqlite3` but the kept copies
 * (`kept/NAME.sqlite3`, one per database on stores whose rules see prefixes only).
 */
async function backups(bucket: string, prefix: string): Promise<string[]> {
  return (await server.keys(bucket, `${prefix}/`))
    .filter((k) => k.endsWith(".sqlite3") && !k.startsWith(`${prefix}/kept/`));
}

/** One CLI scenario: a fresh bucket, a working directory and a database in it. */
interface Scenario {
  bucket: string;
  /** The working directory (removed after the step). */
  dir: string;
  prefix: string;
  /** The store URL, `s3://BUCKET/PREFIX`. */
  url: string;
  /** `dir/app.db`, the database of the step. */
  db: string;
  /** `dir/new/app.db`: where a restore on a new machine goes (not created). */
  restored: string;
}

/**
 * Runs `fn` as step `step` of `t` (skipped when `ignore` says so) on a fresh scenario whose
 * database has `rows` rows, under prefix `apps/compat`; the scenario's directory is removed
 * afterwards, whether the step passes or not.
 */
async function cliStep(
  t: Deno.TestContext,
  step: string | { name: string; ignore: boolean },
  rows: number,
  fn: (s: Scenario) => Promise<void>,
): Promise<void> {
  await t.step({
    ...(typeof step === "string" ? { name: step } : step),
    fn: async () => {
      const prefix = "apps/compat";
      const bucket = await server.bucket();
      const dir = await tempDir("lifeboat-compat-");
      const db = `${dir}/app.db`;
      makeDb(db, rows);
      try {
        await fn({
          bucket,
          dir,
          prefix,
          url: `s3://${bucket}/${prefix}`,
          db,
          restored: `${dir}/new/app.db`,
        });
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

/** Runs lifeboat and fails with its stderr unless it exits with `code`. */
async function lifeboat(args: string[], env: Record<string, string>, code = 0) {
  const r = await runLifeboat(args, env);
  assert.equal(r.code, code, `lifeboat ${args.join(" ")}:\n${r.stderr}`);
  return r;
}

/** Asserts a failed run said one line, no stack trace and no secret. */
function oneLineFailure(r: RunResult, re: RegExp) {
  assertOneLineError(r, 1, re);
  assert.ok(!r.stderr.includes(server.secretKey), "the secret key was printed");
}

/** The S3 store lifeboat would open for `s3://bucket/prefix` with lifeboat's own variables. */
function storeFor(bucket: string, prefix = "app/db", extra: Record<string, string> = {}): S3Store {
  const url = parseStoreUrl(`s3://${bucket}/${prefix}`);
  if (url.kind !== "s3") throw new Error("not an S3 URL");
  return new S3Store(s3Settings(url, s3Options({ ...s3Env(), ...extra })));
}

Deno.test({
  name: `compat store contract (${server.name})`,
  ...LOOSE,
  fn: async (t) => {
    const dir = await tempDir("lifeboat-compat-");
    try {
      await t.step("an empty prefix lists nothing", async () => {
        assert.deepEqual((await storeFor(await server.bucket()).list(TEST_DIR, 5)).backups, []);
      });
      await t.step("a missing bucket throws instead of looking empty", async () => {
        await assert.rejects(storeFor(`no-such-bucket-${Date.now()}`).list(TEST_DIR, 1));
      });
      await t.step("single PUT: bytes and metadata round-trip", async () => {
        const s = storeFor(await server.bucket());
        const { path, bytes } = await randomFile(dir, 100_000);
        const key = testKey(Date.now(), "m1");
        const meta = metaFor(bytes);
        await s.put(key, path, meta);
        const [listed] = (await s.list(TEST_DIR, 5)).backups;
        assert.equal(listed.key, key);
        assert.equal(listed.size, bytes.length);
        const opened = await s.open(key);
        assert.deepEqual(new Uint8Array(await new Response(opened.body).arrayBuffer()), bytes);
        assert.deepEqual(opened.meta, meta);
      });
      await t.step("newest first, at most `limit`", async () => {
        const s = storeFor(await server.bucket());
        const { path, bytes } = await randomFile(dir, 1000);
        const base = 1_700_000_000_000;
        for (const k of [5, 1, 9, 3, 7]) {
          await s.put(testKey(base + k * 1000, "m1"), path, metaFor(bytes));
        }
        const got = (await s.list(TEST_DIR, 3)).backups;
        assert.deepEqual(
          got.map((b) => b.createdAt.getTime()),
          [9, 7, 5].map((k) => base + k * 1000),
        );
      });
      await t.step("multipart with 13 parts of 5 MiB: bytes round-trip", async () => {
        const s = storeFor(await server.bucket(), "app/db", { LIFEBOAT_S3_PART_SIZE_MB: "5" });
        const parts: number[] = [];
        s.client.middlewareStack.add((next, ctx) => (args) => {
          if (ctx.commandName === "UploadPartCommand") {
            parts.push((args.input as { PartNumber: number }).PartNumber);
          }
          return next(args);
        }, { step: "initialize", name: "countParts" });
        const { path, bytes } = await randomFile(dir, 12 * 5 * MiB + 12345);
        const key = testKey(Date.now(), "m1");
        await s.put(key, path, metaFor(bytes));
        assert.equal(new Set(parts).size, 13);
        const opened = await s.open(key);
        const got = new Uint8Array(await new Response(opened.body).arrayBuffer());
        assert.equal(got.length, bytes.length);
        assert.deepEqual(got, bytes);
      });
      await t.step("an aborted multipart put leaves no object and no pending upload", async () => {
        const bucket = await server.bucket();
        const s = storeFor(bucket, "app/db", { LIFEBOAT_S3_PART_SIZE_MB: "5" });
        const ac = new AbortController();
        s.client.middlewareStack.add((next, ctx) => (args) => {
          if (ctx.commandName === "UploadPartCommand") ac.abort(new Error("stop"));
          return next(args);
        }, { step: "initialize", name: "abortOnPart" });
        const { path, bytes } = await randomFile(dir, 24 * MiB);
        await assert.rejects(
          s.put(testKey(Date.now(), "m1"), path, metaFor(bytes), { signal: ac.signal }),
        );
        assert.deepEqual((await s.list(TEST_DIR, 5)).backups, []);
        assert.deepEqual(await backups(bucket, "app/db"), []);
        assert.equal(await server.pendingUploads(bucket), 0);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: `compat CLI round trips (${server.name})`,
  ...LOOSE,
  fn: async (t) => {
    await cliStep(
      t,
      "single PUT: backup, then restore on a new machine gives the same rows",
      500,
      async ({ bucket, prefix, url, db, restored }) => {
        await lifeboat(["backup", "--db", db], cliEnv(url));
        const [key, ...more] = await backups(bucket, prefix);
        assert.ok(key && more.length === 0, "one backup object");
        const head = await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        assert.ok(!/-\d+"?$/.test(head.ETag ?? ""), `a single PUT, not multipart: ${head.ETag}`);
        await lifeboat(["restore", "--db", restored], cliEnv(url));
        assert.deepEqual(readRows(restored), readRows(db));
        assert.equal(integrity(restored), "ok");
      },
    );

    await cliStep(
      t,
      "multipart with many parts: a 60 MiB database in 5 MiB parts",
      10,
      async ({ bucket, prefix, url, db, restored }) => {
        growDb(db, 60);
        const env = cliEnv(url, { LIFEBOAT_S3_PART_SIZE_MB: "5" });
        await lifeboat(["backup", "--db", db], env);
        const [key] = await backups(bucket, prefix);
        const head = await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        const parts = Number(/-(\d+)"?$/.exec(head.ETag ?? "")?.[1]);
        assert.ok(parts >= 12, `a multipart ETag with at least 12 parts: ${head.ETag}`);
        assert.equal(head.ContentLength, (await Deno.stat(db)).size);
        await lifeboat(["restore", "--db", restored], env);
        assert.equal(integrity(restored), "ok");
        assert.deepEqual(readRows(restored), readRows(db));
      },
    );

    await cliStep(
      t,
      {
        name:
          "a body damaged in transit is refused (Content-MD5, or the ETag where the server ignores it), retried, and lands intact",
        ignore: false,
      },
      200,
      async ({ url, db, restored }) => {
        addRow(db, "last");
        const proxy = startS3Proxy(server.endpoint, { signedUpstream: true });
        try {
          proxy.faults.push({
            match: is.put,
            action: { kind: "corruptRequest", serverChecks: true },
            times: 1,
          });
          const env = cliEnv(url, { LIFEBOAT_S3_ENDPOINT: proxy.endpoint });
          const b = await lifeboat(["backup", "--db", db], env);
          assert.equal(proxy.injected, 1);
          // Content-MD5 (BadDigest), or over plain HTTP the SigV4 payload hash, refuses it first;
          // a server that checks neither (moto) shows it in its ETag, and lifeboat reads it back.
          assert.match(
            b.stderr,
            /BadDigest|XAmzContentSHA256Mismatch|holds different bytes than were sent/,
            b.stderr,
          );
          const r = await lifeboat(["restore", "--db", restored], cliEnv(url));
          assert.doesNotMatch(r.stderr, /failed verification/);
          assert.equal(readRows(restored).at(-1), "last");
        } finally {
          await proxy.stop();
        }
      },
    );

    await cliStep(
      t,
      "a corrupt newest backup is refused and the older one restored",
      100,
      async ({ bucket, prefix, url, db, restored }) => {
        await lifeboat(["backup", "--db", db], cliEnv(url));
        const older = readRows(db);
        const first = await backups(bucket, prefix);
        addRow(db, "only-in-the-newest");
        await lifeboat(["backup", "--db", db], cliEnv(url));
        const [newest] = (await backups(bucket, prefix)).filter((k) => !first.includes(k));
        assert.ok(newest, "the second backup is a new object");
        // Flip bytes in the middle of the newest object, keeping its size and metadata.
        const obj = await server.client.send(new GetObjectCommand({ Bucket: bucket, Key: newest }));
        const body = await obj.Body!.transformToByteArray();
        for (let i = 0; i < 64; i++) body[Math.floor(body.length / 2) + i] ^= 0xff;
        await server.client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: newest,
            Body: body,
            Metadata: obj.Metadata,
            ContentType: obj.ContentType,
          }),
        );
        const r = await lifeboat(["restore", "--db", restored], cliEnv(url));
        assert.ok(r.lines.some((l) => l.includes(newest.split("/").at(-1)!)), r.stderr);
        assert.deepEqual(readRows(restored), older);
      },
    );

    await cliStep(
      t,
      "watch + SIGTERM: the final backup holds the last write",
      50,
      async ({ bucket, prefix, url, db, restored }) => {
        const w = spawnLifeboat(["watch", "--db", db, "--interval", "1h"], cliEnv(url));
        await w.waitForLine(/watching/);
        addRow(db, "written-before-sigterm");
        const done = await w.stop();
        assert.equal(done.code, 0, done.stderr);
        assert.ok((await backups(bucket, prefix)).length >= 1);
        await lifeboat(["restore", "--db", restored], cliEnv(url));
        assert.ok(readRows(restored).includes("written-before-sigterm"));
      },
    );

    await t.step("a missing bucket: one line, exit 1, for backup and restore", async () => {
      const dir = await tempDir("lifeboat-compat-");
      makeDb(`${dir}/app.db`, 5);
      const env = cliEnv(`s3://no-such-bucket-${Date.now()}/p`, { LIFEBOAT_RESTORE_ATTEMPTS: "1" });
      for (
        const args of [["backup", "--db", `${dir}/app.db`], ["restore", "--db", `${dir}/r.db`]]
      ) {
        oneLineFailure(await runLifeboat(args, env), /bucket "no-such-bucket-\d+" does not exist/);
      }
      await Deno.remove(dir, { recursive: true });
    });

    await cliStep(
      t,
      {
        name: "wrong keys: one line naming the credentials, no secret printed" +
          (server.checksSignatures ? "" : " (skipped: moto does not check signatures)"),
        ignore: !server.checksSignatures,
      },
      5,
      async ({ dir, url, db }) => {
        for (
          const wrong of [
            { LIFEBOAT_SECRET_ACCESS_KEY: `${server.secretKey}-wrong` } as Record<string, string>,
            { LIFEBOAT_ACCESS_KEY_ID: "NO-SUCH-KEY" },
          ]
        ) {
          const env = cliEnv(url, { ...wrong, LIFEBOAT_RESTORE_ATTEMPTS: "1" });
          for (const args of [["backup", "--db", db], ["restore", "--db", `${dir}/r.db`]]) {
            const r = await runLifeboat(args, env);
            oneLineFailure(r, /rejected the credentials/);
            assert.ok(
              !r.stderr.includes(`${server.secretKey}-wrong`),
              "the wrong secret was printed",
            );
          }
        }
      },
    );

    await cliStep(
      t,
      "LIFEBOAT_S3_SSE=AES256 and when_supported checksums are accepted (PUT and multipart)",
      10,
      async ({ bucket, prefix, url, db, restored }) => {
        for (const size of [0, 12]) {
          if (size) growDb(db, size);
          for (
            const extra of [
              { LIFEBOAT_S3_SSE: "AES256" } as Record<string, string>,
              {
                LIFEBOAT_S3_CHECKSUM: "when_supported",
              },
            ]
          ) {
            addRow(db, crypto.randomUUID());
            const env = cliEnv(url, { ...extra, LIFEBOAT_S3_PART_SIZE_MB: "5" });
            await lifeboat(["backup", "--db", db], env);
          }
        }
        assert.equal((await backups(bucket, prefix)).length, 4);
        await lifeboat(["restore", "--db", restored], cliEnv(url));
        assert.deepEqual(readRows(restored), readRows(db));
      },
    );

    await cliStep(
      t,
      "SIGKILL mid-upload leaves no visible object; the previous backup still restores",
      20,
      async ({ bucket, prefix, url, db, restored }) => {
        await lifeboat(["backup", "--db", db], cliEnv(url));
        const before = await backups(bucket, prefix);
        const rows = readRows(db);
        growDb(db, 60);
        const env = cliEnv(url, { LIFEBOAT_S3_PART_SIZE_MB: "5", LIFEBOAT_S3_CONCURRENCY: "1" });
        const b = spawnLifeboat(["backup", "--db", db], env);
        let exited = false;
        b.proc.status.then(() => (exited = true));
        while (!exited && (await server.pendingUploads(bucket)) === 0) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(!exited, "the upload finished before it could be killed");
        b.proc.kill("SIGKILL");
        await b.done();
        assert.deepEqual(await backups(bucket, prefix), before, "no new object is visible");
        await lifeboat(["restore", "--db", restored], cliEnv(url));
        assert.deepEqual(readRows(restored), rows);
        // The abandoned upload stays until the bucket's lifecycle rule aborts it.
        assert.equal(await server.pendingUploads(bucket), 1);
      },
    );
  },
});
