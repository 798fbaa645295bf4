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
import { backupKey } from "../../src/store/keys.ts";
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
import { metaFor, randomFile } from "../../testkit/backup_files.ts";
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

/** The backups under `prefix`, found by listing: any key ending in `.sqlite3`. */
async function backups(bucket: string, prefix: string): Promise<string[]> {
  return (await server.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".sqlite3"));
}

/** A fresh bucket, a working directory and the store URL of one scenario. */
async function scene(prefix = "apps/compat") {
  const bucket = await server.bucket();
  const dir = await tempDir("lifeboat-compat-");
  return { bucket, dir, prefix, url: `s3://${bucket}/${prefix}` };
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
        assert.deepEqual(await storeFor(await server.bucket()).newest(5), []);
      });
      await t.step("a missing bucket throws instead of looking empty", async () => {
        await assert.rejects(storeFor(`no-such-bucket-${Date.now()}`).newest(1));
      });
      await t.step("single PUT: bytes and metadata round-trip", async () => {
        const s = storeFor(await server.bucket());
        const { path, bytes } = await randomFile(dir, 100_000);
        const key = backupKey(Date.now(), "m1");
        const meta = metaFor(bytes);
        await s.put(key, path, meta);
        const [listed] = await s.newest(5);
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
          await s.put(backupKey(base + k * 1000, "m1"), path, metaFor(bytes));
        }
        const got = await s.newest(3);
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
        const key = backupKey(Date.now(), "m1");
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
        await assert.rejects(s.put(backupKey(Date.now(), "m1"), path, metaFor(bytes), ac.signal));
        assert.deepEqual(await s.newest(5), []);
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
    await t.step(
      "single PUT: backup, then restore on a new machine gives the same rows",
      async () => {
        const { bucket, dir, prefix, url } = await scene();
        makeDb(`${dir}/app.db`, 500);
        await lifeboat(["backup", "--db", `${dir}/app.db`], cliEnv(url));
        const [key, ...more] = await backups(bucket, prefix);
        assert.ok(key && more.length === 0, "one backup object");
        const head = await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        assert.ok(!/-\d+"?$/.test(head.ETag ?? ""), `a single PUT, not multipart: ${head.ETag}`);
        await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
        assert.deepEqual(readRows(`${dir}/new/app.db`), readRows(`${dir}/app.db`));
        assert.equal(integrity(`${dir}/new/app.db`), "ok");
        await Deno.remove(dir, { recursive: true });
      },
    );

    await t.step("multipart with many parts: a 60 MiB database in 5 MiB parts", async () => {
      const { bucket, dir, prefix, url } = await scene();
      makeDb(`${dir}/app.db`, 10);
      growDb(`${dir}/app.db`, 60);
      const env = cliEnv(url, { LIFEBOAT_S3_PART_SIZE_MB: "5" });
      await lifeboat(["backup", "--db", `${dir}/app.db`], env);
      const [key] = await backups(bucket, prefix);
      const head = await server.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      const parts = Number(/-(\d+)"?$/.exec(head.ETag ?? "")?.[1]);
      assert.ok(parts >= 12, `a multipart ETag with at least 12 parts: ${head.ETag}`);
      assert.equal(head.ContentLength, (await Deno.stat(`${dir}/app.db`)).size);
      await lifeboat(["restore", "--db", `${dir}/new/app.db`], env);
      assert.equal(integrity(`${dir}/new/app.db`), "ok");
      assert.deepEqual(readRows(`${dir}/new/app.db`), readRows(`${dir}/app.db`));
      await Deno.remove(dir, { recursive: true });
    });

    await t.step({
      name:
        "a body damaged in transit is refused by the server (Content-MD5), retried, and lands intact" +
        (server.checksSignatures ? "" : " (skipped: moto does not check Content-MD5)"),
      // The same server property: moto checks neither signatures nor Content-MD5.
      ignore: !server.checksSignatures,
      fn: async () => {
        const { dir, url } = await scene();
        makeDb(`${dir}/app.db`, 200);
        addRow(`${dir}/app.db`, "last");
        const proxy = startS3Proxy(server.endpoint, { signedUpstream: true });
        try {
          proxy.faults.push({
            match: is.put,
            action: { kind: "corruptRequest", serverChecks: true },
            times: 1,
          });
          const env = cliEnv(url, { LIFEBOAT_S3_ENDPOINT: proxy.endpoint });
          const b = await lifeboat(["backup", "--db", `${dir}/app.db`], env);
          assert.equal(proxy.injected, 1);
          // Content-MD5 (BadDigest), or over plain HTTP the SigV4 payload hash, refuses it first.
          assert.match(b.stderr, /BadDigest|XAmzContentSHA256Mismatch/, b.stderr);
          const r = await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
          assert.doesNotMatch(r.stderr, /failed verification/);
          assert.equal(readRows(`${dir}/new/app.db`).at(-1), "last");
        } finally {
          await proxy.stop();
          await Deno.remove(dir, { recursive: true });
        }
      },
    });

    await t.step("a corrupt newest backup is refused and the older one restored", async () => {
      const { bucket, dir, prefix, url } = await scene();
      makeDb(`${dir}/app.db`, 100);
      await lifeboat(["backup", "--db", `${dir}/app.db`], cliEnv(url));
      const older = readRows(`${dir}/app.db`);
      const first = await backups(bucket, prefix);
      addRow(`${dir}/app.db`, "only-in-the-newest");
      await lifeboat(["backup", "--db", `${dir}/app.db`], cliEnv(url));
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
      const r = await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
      assert.ok(r.lines.some((l) => l.includes(newest.split("/").at(-1)!)), r.stderr);
      assert.deepEqual(readRows(`${dir}/new/app.db`), older);
      await Deno.remove(dir, { recursive: true });
    });

    await t.step("watch + SIGTERM: the final backup holds the last write", async () => {
      const { bucket, dir, prefix, url } = await scene();
      makeDb(`${dir}/app.db`, 50);
      const w = spawnLifeboat(["watch", "--db", `${dir}/app.db`, "--interval", "1h"], cliEnv(url));
      await w.waitForLine(/watching/);
      addRow(`${dir}/app.db`, "written-before-sigterm");
      const done = await w.stop();
      assert.equal(done.code, 0, done.stderr);
      assert.ok((await backups(bucket, prefix)).length >= 1);
      await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
      assert.ok(readRows(`${dir}/new/app.db`).includes("written-before-sigterm"));
      await Deno.remove(dir, { recursive: true });
    });

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

    await t.step({
      name: "wrong keys: one line naming the credentials, no secret printed" +
        (server.checksSignatures ? "" : " (skipped: moto does not check signatures)"),
      ignore: !server.checksSignatures,
      fn: async () => {
        const { dir, url } = await scene();
        makeDb(`${dir}/app.db`, 5);
        for (
          const wrong of [
            { LIFEBOAT_SECRET_ACCESS_KEY: `${server.secretKey}-wrong` } as Record<string, string>,
            { LIFEBOAT_ACCESS_KEY_ID: "NO-SUCH-KEY" },
          ]
        ) {
          const env = cliEnv(url, { ...wrong, LIFEBOAT_RESTORE_ATTEMPTS: "1" });
          for (
            const args of [["backup", "--db", `${dir}/app.db`], ["restore", "--db", `${dir}/r.db`]]
          ) {
            const r = await runLifeboat(args, env);
            oneLineFailure(r, /rejected the credentials/);
            assert.ok(
              !r.stderr.includes(`${server.secretKey}-wrong`),
              "the wrong secret was printed",
            );
          }
        }
        await Deno.remove(dir, { recursive: true });
      },
    });
    await t.step(
      "LIFEBOAT_S3_SSE=AES256 and when_supported checksums are accepted (PUT and multipart)",
      async () => {
        const { bucket, dir, prefix, url } = await scene();
        makeDb(`${dir}/app.db`, 10);
        for (const size of [0, 12]) {
          if (size) growDb(`${dir}/app.db`, size);
          for (
            const extra of [
              { LIFEBOAT_S3_SSE: "AES256" } as Record<string, string>,
              {
                LIFEBOAT_S3_CHECKSUM: "when_supported",
              },
            ]
          ) {
            addRow(`${dir}/app.db`, crypto.randomUUID());
            const env = cliEnv(url, { ...extra, LIFEBOAT_S3_PART_SIZE_MB: "5" });
            await lifeboat(["backup", "--db", `${dir}/app.db`], env);
          }
        }
        assert.equal((await backups(bucket, prefix)).length, 4);
        await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
        assert.deepEqual(readRows(`${dir}/new/app.db`), readRows(`${dir}/app.db`));
        await Deno.remove(dir, { recursive: true });
      },
    );

    await t.step(
      "SIGKILL mid-upload leaves no visible object; the previous backup still restores",
      async () => {
        const { bucket, dir, prefix, url } = await scene();
        makeDb(`${dir}/app.db`, 20);
        await lifeboat(["backup", "--db", `${dir}/app.db`], cliEnv(url));
        const before = await backups(bucket, prefix);
        const rows = readRows(`${dir}/app.db`);
        growDb(`${dir}/app.db`, 60);
        const env = cliEnv(url, { LIFEBOAT_S3_PART_SIZE_MB: "5", LIFEBOAT_S3_CONCURRENCY: "1" });
        const b = spawnLifeboat(["backup", "--db", `${dir}/app.db`], env);
        let exited = false;
        b.proc.status.then(() => (exited = true));
        while (!exited && (await server.pendingUploads(bucket)) === 0) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(!exited, "the upload finished before it could be killed");
        b.proc.kill("SIGKILL");
        await b.done();
        assert.deepEqual(await backups(bucket, prefix), before, "no new object is visible");
        await lifeboat(["restore", "--db", `${dir}/new/app.db`], cliEnv(url));
        assert.deepEqual(readRows(`${dir}/new/app.db`), rows);
        // The abandoned upload stays until the bucket's lifecycle rule aborts it.
        assert.equal(await server.pendingUploads(bucket), 1);
        await Deno.remove(dir, { recursive: true });
      },
    );
  },
});
