/** Restore's download from S3: a backup of several parts comes back byte for byte, in one GET or
 * with a few parallel ranges, and from a server that ignores Range in one GET. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { s3Options } from "../src/config.ts";
import { S3Store } from "../src/store/s3.ts";
import { metaFor, randomFile, testKey } from "../testkit/backup_files.ts";
import { s3StoreTest } from "../testkit/scene.ts";

const MiB = 1024 * 1024;

s3StoreTest(
  "s3: a multi-part backup downloads byte for byte: one GET of bytes=0- on a fast link, plus ranges tiling the rest in order on a slow one, one GET when the server ignores Range",
  "ranged",
  {},
  async ({ local, dir }) => {
    const size = 21 * MiB + 123;
    const { path, bytes } = await randomFile(dir, size);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const key = testKey(Date.now(), "m1");
    let n = 0;
    /** A store whose probe says the link is fast (one stream) or slow (ranges); its GETs. */
    const storeFor = (oneStreamAboveMiBPerS: number) => {
      const env = { ...local.env, LIFEBOAT_S3_PART_SIZE_MB: "5", LIFEBOAT_S3_CONCURRENCY: "3" };
      const store = new S3Store({
        ...s3Options(env),
        bucket: "ranged",
        prefix: "p",
        oneStreamAboveMiBPerS,
      });
      const gets: (string | undefined)[] = [];
      store.reader.middlewareStack.add((next, ctx) => (args) => {
        const input = args.input as { Range?: string };
        if (ctx.commandName === "GetObjectCommand") gets.push(input.Range);
        return next(args);
      }, { step: "initialize", name: "countGets" });
      const download = async () => {
        const got = await store.download(key, `${dir}/restored-${++n}`);
        assert.deepEqual({ sha256: got.sha256, size: got.size }, { sha256, size });
        assert.equal(got.meta.size, size);
      };
      return { store, gets, download };
    };

    const fast = storeFor(0);
    await fast.store.put(key, path, metaFor(bytes));
    await fast.download();
    assert.deepEqual(fast.gets, ["bytes=0-"]);

    // Slow: the first stream stops at the end of its first range, ranges asked in order tile the
    // rest, each answered with the Content-Range asked for.
    const slow = storeFor(Infinity);
    await slow.download();
    assert.equal(slow.gets[0], "bytes=0-");
    const rest = slow.gets.slice(1).map((r) => r!.slice(6).split("-").map(Number));
    assert.ok(rest.length >= 2, JSON.stringify(slow.gets));
    assert.ok(rest[0][0] >= 5 * MiB, "the first stream carries at least the probe");
    for (let i = 1; i < rest.length; i++) assert.equal(rest[i][0], rest[i - 1][1] + 1);
    assert.equal(rest.at(-1)![1], size - 1);

    // A server that does not do ranges answers the first GET with the whole object: however
    // slow, nothing more is asked of it.
    slow.gets.length = 0;
    slow.store.reader.middlewareStack.add((next) => (args) => {
      const request = args.request as { headers: Record<string, string> };
      delete request.headers.range;
      return next(args);
    }, { step: "finalizeRequest", name: "dropRange" });
    await slow.download();
    assert.equal(slow.gets.length, 1);
  },
);
