/** The Store contract, run against both backends: one suite, two implementations. */
import assert from "node:assert/strict";
import { ListMultipartUploadsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { FileStore } from "../src/store/file.ts";
import { S3Store } from "../src/store/s3.ts";
import { s3Options } from "../src/config.ts";
import { backupKey } from "../src/store/keys.ts";
import type { Store } from "../src/store/store.ts";
import { metaFor, randomFile } from "../testkit/backup_files.ts";
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
}

function contract(backend: Backend, setup: () => Promise<void>, teardown: () => Promise<void>) {
  Deno.test(`${backend.name}: store contract`, async (t) => {
    await setup();
    const dir = await tempDir();
    try {
      await t.step("an empty store lists nothing (confirmed empty)", async () => {
        const s = await backend.fresh();
        assert.deepEqual(await s.newest(5), []);
      });

      await t.step("a missing store throws instead of looking empty", async () => {
        await assert.rejects(backend.missing().newest(1));
      });

      await t.step("put, list and open round-trip bytes and metadata", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 100_000);
        const key = backupKey(Date.now(), "m1");
        const meta = metaFor(bytes, "ab".repeat(32));
        await s.put(key, path, meta);
        const list = await s.newest(5);
        assert.equal(list.length, 1);
        assert.equal(list[0].key, key);
        assert.equal(list[0].size, bytes.length);
        const opened = await s.open(key);
        assert.deepEqual(await readAll(opened.body), bytes);
        assert.deepEqual(opened.meta, meta);
      });

      await t.step("newest returns the newest first, at most `limit`", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 1000);
        const times = [5, 1, 9, 3, 7].map((n) => 1_700_000_000_000 + n * 1000);
        for (const ms of times) await s.put(backupKey(ms, "m1"), path, metaFor(bytes));
        const got = await s.newest(3);
        assert.deepEqual(
          got.map((b) => b.createdAt.getTime()),
          [9, 7, 5].map((n) => 1_700_000_000_000 + n * 1000),
        );
      });

      await t.step("an aborted put leaves nothing a restore could pick", async () => {
        const s = await backend.fresh();
        const { path, bytes } = await randomFile(dir, 24 * MiB);
        const ac = new AbortController();
        ac.abort(new Error("stop"));
        await assert.rejects(
          s.put(backupKey(Date.now(), "m1"), path, metaFor(bytes), { signal: ac.signal }),
        );
        assert.deepEqual(await s.newest(5), []);
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
  },
  async () => {
    fileRoot = await tempDir();
  },
  () => Deno.remove(fileRoot, { recursive: true }),
);

Deno.test("file: put never replaces an existing backup", async () => {
  const dir = await tempDir();
  const s = new FileStore(`${dir}/store`);
  const { path, bytes } = await randomFile(dir, 1000);
  const key = backupKey(Date.now(), "m1");
  await s.put(key, path, metaFor(bytes));
  await assert.rejects(s.put(key, path, metaFor(bytes)), Deno.errors.AlreadyExists);
  const names = [...Deno.readDirSync(`${dir}/store/backups`)].map((e) => `backups/${e.name}`);
  assert.deepEqual(names.sort(), [key, `${key}.json`]);
});

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
  },
  async () => {
    s3 = await startLocalS3();
    for (const [k, v] of Object.entries(s3.env)) Deno.env.set(k, v);
  },
  () => s3!.stop(),
);

Deno.test("s3: one LIST finds the newest among 1,100 backups; multipart aborts leave no upload", async () => {
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
    const newestMs = base + 1_099 * 60_000;
    const { random, replay } = testRandom();
    const order = Array.from({ length: 1_100 }, (_, i) => i).sort(() => random() - 0.5);
    for (let i = 0; i < order.length; i += 50) {
      await Promise.all(
        order.slice(i, i + 50).map((n) =>
          store.client.send(
            new PutObjectCommand({
              Bucket: "many-backups",
              Key: `p/${backupKey(base + n * 60_000, "m1")}`,
              Body: "",
            }),
          )
        ),
      );
    }
    commands.length = 0;
    const [newest] = await store.newest(1);
    assert.equal(newest.createdAt.getTime(), newestMs, `put in random order, ${replay}`);
    assert.deepEqual(commands, ["ListObjectsV2Command"]);

    // A multipart upload aborted after its first part: no object, no pending upload.
    const dir = await tempDir();
    const { path, bytes } = await randomFile(dir, 40 * MiB);
    const ac = new AbortController();
    store.client.middlewareStack.add((next, ctx) => (args) => {
      if (ctx.commandName === "UploadPartCommand") ac.abort(new Error("stop"));
      return next(args);
    }, { step: "initialize", name: "abortOnFirstPart" });
    const key = backupKey(Date.now() + 10 ** 9, "m1");
    await assert.rejects(store.put(key, path, metaFor(bytes), { signal: ac.signal }));
    const [still] = await store.newest(1);
    assert.equal(still.createdAt.getTime(), newestMs);
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
