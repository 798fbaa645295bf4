/** The Store contract, run against both backends: one suite, two implementations. */
import assert from "node:assert/strict";
import { ListMultipartUploadsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { FileStore } from "../src/store/file.ts";
import { S3Store } from "../src/store/s3.ts";
import { s3Options } from "../src/config.ts";
import { keptKey, MARKER_NAME, sealKey } from "../src/store/keys.ts";
import { MAX_SMALL_OBJECT_BYTES, type Store, WriteConflict } from "../src/store/store.ts";
import { metaFor, randomFile, TEST_DIR, testKey } from "../testkit/backup_files.ts";
import { type LocalS3, startLocalS3 } from "../testkit/moto.ts";
import { tempDir } from "../testkit/scene.ts";
import { testRandom } from "../testkit/random.ts";

const MiB = 1024 * 1024;

async function readAll(body: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(body).arrayBuffer());
}

/** A backend under test: how to make a fresh empty store, and one that does not exist. */
interface Backend {
  name: string;
  fresh(): Promise<Store>;
  missing(): Store;
  /** Writes a zero-byte object of any name (a seal, a foreign object) into the store. */
  putRaw(s: Store, key: string): Promise<void>;
}

function contract(backend: Backend, setup: () => Promise<void>, teardown: () => Promise<void>) {
  Deno.test(`${backend.name}: store contract`, async (t) => {
    await setup();
    const dir = await tempDir();
    try {
      await t.step("an empty store lists nothing (confirmed empty)", async () => {
        const s = await backend.fresh();
        assert.deepEqual(await s.list(TEST_DIR, 5), {
          backups: [],
          foreign: 0,
          others: [],
          complete: true,
        });
        assert.equal(await s.readSmall(MARKER_NAME), undefined);
        assert.equal(await s.describe(testKey(1)), undefined);
      });

      await t.step("a missing store throws instead of looking empty", async () => {
        await assert.rejects(backend.missing().list(TEST_DIR, 1));
        await assert.rejects(backend.missing().readSmall(MARKER_NAME));
      });

      await t.step("put, list, describe and open round-trip bytes and metadata", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 100_000);
        const key = testKey(Date.now());
        const meta = metaFor(bytes, "ab".repeat(32));
        await s.put(key, path, meta);
        const { backups } = await s.list(TEST_DIR, 5);
        assert.equal(backups.length, 1);
        assert.equal(backups[0].key, key);
        assert.equal(backups[0].size, bytes.length);
        assert.deepEqual(backups[0].place, { layout: "v3", name: "db", tier: "recent" });
        assert.deepEqual(await s.describe(key), { meta, size: bytes.length });
        const opened = await s.open(key);
        assert.deepEqual(await readAll(opened.body), bytes);
        assert.deepEqual(opened.meta, meta);
      });

      await t.step("list returns the newest first, at most `limit`; seals and strays", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 1000);
        const times = [5, 1, 9, 3, 7].map((n) => 1_700_000_000_000 + n * 1000);
        const keys = [];
        for (const ms of times) {
          keys.push(testKey(ms));
          await s.put(keys.at(-1)!, path, metaFor(bytes));
        }
        await backend.putRaw(s, sealKey(keys[2], "cd".repeat(32)));
        await backend.putRaw(s, `${keys[2]}.partial00001`);
        const got = await s.list(TEST_DIR, 3);
        assert.deepEqual(
          got.backups.map((b) => b.createdAt.getTime()),
          [9, 7, 5].map((n) => 1_700_000_000_000 + n * 1000),
        );
        assert.equal(got.backups[0].sha256, "cd".repeat(32), "the seal's SHA-256");
        assert.equal(got.backups[1].sha256, undefined);
        assert.equal(got.foreign, 1);
      });

      await t.step("an aborted put leaves nothing a restore could pick", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 24 * MiB);
        const ac = new AbortController();
        ac.abort(new Error("stop"));
        await assert.rejects(
          s.put(testKey(Date.now()), path, metaFor(bytes), { signal: ac.signal }),
        );
        assert.deepEqual((await s.list(TEST_DIR, 5)).backups, []);
      });

      await t.step("put never replaces: a taken key is a WriteConflict", async () => {
        const s = await backend.fresh();
        const a = await randomFile(dir, 1000), b = await randomFile(dir, 2000);
        const key = testKey(Date.now());
        await s.put(key, a.path, metaFor(a.bytes, "aa".repeat(32)));
        await assert.rejects(s.put(key, b.path, metaFor(b.bytes)), WriteConflict);
        assert.deepEqual(await readAll((await s.open(key)).body), a.bytes);
        assert.equal(s.conditionalWrites(), "yes");
      });

      await t.step("small objects: conditional writes, bounded reads", async () => {
        const s = await backend.fresh();
        const first = await s.writeSmall(MARKER_NAME, "one", { ifNoneMatch: true });
        await assert.rejects(
          s.writeSmall(MARKER_NAME, "two", { ifNoneMatch: true }),
          WriteConflict,
        );
        assert.deepEqual(await s.readSmall(MARKER_NAME), { text: "one", etag: first });
        const second = await s.writeSmall(MARKER_NAME, "two", { ifMatch: first });
        await assert.rejects(s.writeSmall(MARKER_NAME, "three", { ifMatch: first }), WriteConflict);
        assert.deepEqual(await s.readSmall(MARKER_NAME), { text: "two", etag: second });
        await s.writeSmall(MARKER_NAME, "x".repeat(MAX_SMALL_OBJECT_BYTES + 1), {});
        await assert.rejects(s.readSmall(MARKER_NAME), /more than the 64 KiB lifeboat reads/);
      });

      await t.step("copy replaces the kept copy, with the metadata given", async () => {
        const s = await backend.fresh();
        const a = await randomFile(dir, 3000), b = await randomFile(dir, 5000);
        const [ka, kb] = [testKey(1_700_000_000_000), testKey(1_700_000_001_000)];
        await s.put(ka, a.path, metaFor(a.bytes));
        await s.put(kb, b.path, metaFor(b.bytes));
        await s.copy(ka, keptKey("db"), { ...metaFor(a.bytes), sourceKey: ka });
        await s.copy(kb, keptKey("db"), { ...metaFor(b.bytes), sourceKey: kb });
        const kept = await s.open(keptKey("db"));
        assert.deepEqual(await readAll(kept.body), b.bytes);
        assert.equal(kept.meta.sourceKey, kb);
        await s.tag(kb, { "lifeboat-superseded": "true" });
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      await teardown();
    }
  });
}

// --- the directory backend ---
let fileRoot = "";
contract(
  {
    name: "file",
    fresh: async () => new FileStore(await Deno.makeTempDir({ dir: fileRoot })),
    missing: () => new FileStore(`${fileRoot}/does-not-exist`),
    putRaw: (s, key) => Deno.writeFile(`${(s as FileStore).dir}/${key}`, new Uint8Array()),
  },
  async () => {
    fileRoot = await tempDir();
  },
  () => Deno.remove(fileRoot, { recursive: true }),
);

// --- the S3 backend, against moto ---
let s3: LocalS3 | undefined;
let bucketN = 0;
function s3Store(bucket: string, prefix = "app/db"): S3Store {
  return new S3Store({
    ...s3Options({ AWS_ENDPOINT_URL_S3: s3!.endpoint }),
    bucket,
    prefix,
  });
}
contract(
  {
    name: "s3",
    fresh: async () => {
      const bucket = `contract-${++bucketN}`;
      await s3!.createBucket(bucket);
      return s3Store(bucket);
    },
    missing: () => s3Store("no-such-bucket-here"),
    putRaw: async (s, key) => {
      const store = s as S3Store;
      const Bucket = store.location.slice(5).split("/")[0];
      await store.client.send(new PutObjectCommand({ Bucket, Key: `app/db/${key}`, Body: "" }));
    },
  },
  async () => {
    s3 = await startLocalS3();
    for (const [k, v] of Object.entries(s3.env)) Deno.env.set(k, v);
  },
  () => s3!.stop(),
);

Deno.test("s3: one LIST finds the newest backup, 2 past 1,001 almost-keys, never more than 3; multipart aborts leave no upload", async () => {
  const local = await startLocalS3();
  for (const [k, v] of Object.entries(local.env)) Deno.env.set(k, v);
  try {
    await local.createBucket("many-backups");
    const store = new S3Store({
      ...s3Options({ AWS_ENDPOINT_URL_S3: local.endpoint }),
      bucket: "many-backups",
      prefix: "p",
    });
    const commands: string[] = [];
    store.client.middlewareStack.add((next, ctx) => (args) => {
      commands.push(String(ctx.commandName));
      return next(args);
    }, { step: "initialize", name: "countCommands" });

    const base = 1_700_000_000_000;
    const newestMs = base + 19 * 60_000;
    const { random, replay } = testRandom();
    const order = Array.from({ length: 20 }, (_, i) => i).sort(() => random() - 0.5);
    await local.putObjects("many-backups", order.map((n) => `p/${testKey(base + n * 60_000)}`));
    commands.length = 0;
    const [newest] = (await store.list(TEST_DIR, 1)).backups;
    assert.equal(newest.createdAt.getTime(), newestMs, `put in random order, ${replay}`);
    assert.deepEqual(commands, ["ListObjectsV2Command"]);

    // Objects that almost parse, sorting before every backup (#20.6): one more than a page costs
    // one page more; past 3 pages the budget ends, and the listing says it is incomplete.
    const almost = (n: number, from: number) =>
      Array.from({ length: n }, (_, i) => `p/${testKey(base + 2e9 + from + i)}.partial00001`);
    await local.putObjects("many-backups", almost(1_001, 0));
    commands.length = 0;
    const crowded = await store.list(TEST_DIR, 1);
    assert.equal(crowded.backups[0].createdAt.getTime(), newestMs);
    assert.equal(crowded.foreign, 1_001);
    assert.equal(commands.length, 2);
    // Three pages must not reach the backups: pages of 300 keys (as a server may answer) are
    // filled by the 1,001 almost-keys, without storing 2,000 more of them.
    store.client.middlewareStack.add((next, ctx) => (args) => {
      const input = args.input as { MaxKeys?: number };
      if (ctx.commandName === "ListObjectsV2Command") input.MaxKeys = 300;
      return next(args);
    }, { step: "initialize", name: "smallPages" });
    commands.length = 0;
    const over = await store.list(TEST_DIR, 1);
    assert.deepEqual([over.backups, over.complete, commands.length], [[], false, 3]);
    store.client.middlewareStack.remove("smallPages");

    // A multipart upload aborted after its first part: no object, no pending upload.
    const dir = await tempDir();
    const { path, bytes } = await randomFile(dir, 40 * MiB);
    const ac = new AbortController();
    store.client.middlewareStack.add((next, ctx) => (args) => {
      if (ctx.commandName === "UploadPartCommand") ac.abort(new Error("stop"));
      return next(args);
    }, { step: "initialize", name: "abortOnFirstPart" });
    const key = testKey(Date.now() + 10 ** 9, "m1");
    await assert.rejects(store.put(key, path, metaFor(bytes), { signal: ac.signal }));
    assert.equal(await store.describe(key), undefined);
    let pending = 1;
    for (let i = 0; i < 50 && pending > 0; i++) {
      const res = await store.client.send(
        new ListMultipartUploadsCommand({ Bucket: "many-backups" }),
      );
      pending = res.Uploads?.length ?? 0;
      if (pending) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(pending, 0, "the aborted multipart upload is still pending");
    await Deno.remove(dir, { recursive: true });
  } finally {
    await local.stop();
  }
});
