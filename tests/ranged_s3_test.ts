/** Restore's download from S3: a backup of several parts comes back byte for byte, in one GET or
 * with a few parallel ranges, and from a server that ignores Range in one GET. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { backupKey } from "../src/store/keys.ts";
import { metaFor, randomFile } from "../testkit/backup_files.ts";
import { s3StoreTest } from "../testkit/scene.ts";

const MiB = 1024 * 1024;

s3StoreTest(
  "s3: a multi-part backup downloads byte for byte (one GET of bytes=0-, perhaps parallel ranges of the rest), and in one GET when the server ignores Range",
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
    // One GET of `bytes=0-`; over loopback it usually carries everything, else 2 more ranges
    // (concurrency 3) tile the rest.
    assert.equal(gets[0], "bytes=0-");
    const rest = gets.slice(1).map((r) => r!.slice(6).split("-").map(Number));
    assert.ok(rest.length === 0 || rest.length === 2, JSON.stringify(gets));
    if (rest.length) {
      assert.equal(rest[1][0], rest[0][1] + 1);
      assert.equal(rest[1][1], size - 1);
    }

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
