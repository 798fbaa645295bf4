/** Restore's download from S3: a backup of several parts comes back byte for byte as a few
 * parallel ranges (one GetObject each), and from a server that ignores Range as one GET. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { backupKey } from "../src/store/keys.ts";
import { metaFor, randomFile } from "../testkit/backup_files.ts";
import { s3StoreTest } from "../testkit/scene.ts";

const MiB = 1024 * 1024;

s3StoreTest(
  "s3: a multi-part backup downloads as the first part then `concurrency` ranges at once, byte for byte, and in one GET when the server ignores Range",
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
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    let n = 0;
    const download = () => store.download(key, `${dir}/restored-${++n}`);

    const got = await download();
    assert.deepEqual({ sha256: got.sha256, size: got.size }, { sha256, size });
    assert.equal(got.meta.size, size);
    // The first part (5 MiB) tells the size; the other 16 MiB + 123 come as 3 ranges at once.
    const rest = size - 5 * MiB, each = Math.ceil(rest / 3);
    assert.deepEqual(gets, [
      `bytes=0-${5 * MiB - 1}`,
      ...[0, 1, 2].map((i) => {
        const from = 5 * MiB + i * each;
        return `bytes=${from}-${Math.min(size, from + each) - 1}`;
      }),
    ]);

    // A server that does not do ranges answers the first GET with the whole object.
    gets.length = 0;
    store.reader.middlewareStack.add((next) => (args) => {
      const request = args.request as { headers: Record<string, string> };
      delete request.headers.range;
      return next(args);
    }, { step: "finalizeRequest", name: "dropRange" });
    const whole = await download();
    assert.deepEqual({ sha256: whole.sha256, size: whole.size }, { sha256, size });
    assert.equal(gets.length, 1);
  },
);
