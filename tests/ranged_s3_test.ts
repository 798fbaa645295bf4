/** Restore's download from S3: a backup of several parts comes back byte for byte as parallel
 * ranges (one GetObject each), and from a server that ignores Range as one GET. */
import assert from "node:assert/strict";
import { backupKey } from "../src/store/keys.ts";
import { metaFor, randomFile } from "../testkit/backup_files.ts";
import { s3StoreTest } from "../testkit/scene.ts";

const MiB = 1024 * 1024;

s3StoreTest(
  "s3: a multi-part backup is read back in parallel ranges, byte for byte, and in one GET when the server ignores Range",
  "ranged",
  { LIFEBOAT_S3_PART_SIZE_MB: "5", LIFEBOAT_S3_CONCURRENCY: "3" },
  async ({ store, dir }) => {
    const gets: (string | undefined)[] = [];
    store.reader.middlewareStack.add((next, ctx) => (args) => {
      const input = args.input as { Range?: string };
      if (ctx.commandName === "GetObjectCommand") gets.push(input.Range);
      return next(args);
    }, { step: "initialize", name: "countGets" });

    const size = 21 * MiB + 123;
    const { path, bytes } = await randomFile(dir, size);
    const key = backupKey(Date.now(), "m1");
    await store.put(key, path, metaFor(bytes));
    // Compared by digest: node:assert compares 21 MiB arrays element by element, for minutes.
    const digest = async (b: Uint8Array | ArrayBuffer) =>
      new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(b))).join();
    const expected = await digest(bytes);
    const read = async () => digest(await new Response((await store.open(key)).body).arrayBuffer());

    assert.equal(await read(), expected);
    const part = 5 * MiB;
    assert.deepEqual(
      gets.sort(),
      [0, 1, 2, 3, 4].map((n) => `bytes=${n * part}-${Math.min(size, (n + 1) * part) - 1}`).sort(),
    );

    // A server that does not do ranges answers the first GET with the whole object.
    gets.length = 0;
    store.reader.middlewareStack.add((next) => (args) => {
      const request = args.request as { headers: Record<string, string> };
      delete request.headers.range;
      return next(args);
    }, { step: "finalizeRequest", name: "dropRange" });
    assert.equal(await read(), expected);
    assert.equal(gets.length, 1);
  },
);
