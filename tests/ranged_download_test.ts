/** The ranged download: the file and its hash are the object's, whether the rest came in one
 * stream or in parallel ranges finishing in any order, and every wrong answer (short, long,
 * stalled, failed) is caught, never a silently different file. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { downloadRanges, type FetchRange } from "../src/store/ranged_download.ts";
import { testRandom } from "../testkit/random.ts";
import { tempDir } from "../testkit/scene.ts";

const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) % 251);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
/** Always parallel once the probe is in (a slow link), or never (a fast one). */
const SLOW = { oneStreamAboveMiBPerS: Infinity }, FAST = { oneStreamAboveMiBPerS: 0 };

/** How many streams are being read at once, and the most there were. */
interface Reading {
  now: number;
  most: number;
}

/** A stream of `bytes` in `pieces`; pulled only when read, so `reading` counts real reads. */
function streamOf(bytes: Uint8Array, pieces = 8, reading?: Reading): ReadableStream<Uint8Array> {
  const step = Math.max(1, Math.ceil(bytes.length / pieces));
  let off = 0, started = false, ended = false;
  const end = () => {
    if (started && !ended && reading) reading.now--;
    ended = true;
  };
  return new ReadableStream({
    pull(c) {
      if (!started && reading) reading.most = Math.max(reading.most, ++reading.now);
      started = true;
      if (off >= bytes.length) {
        end();
        return c.close();
      }
      c.enqueue(bytes.slice(off, off + step));
      off += step;
    },
    cancel: end,
  }, { highWaterMark: 0 });
}

/** Ranges asked for must tile [cut, size) in order, whatever the cut. */
function assertTiles(asked: [number, number][], size: number) {
  const sorted = [...asked].sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < sorted.length; i++) assert.equal(sorted[i][0], sorted[i - 1][1]);
  if (sorted.length) assert.equal(sorted.at(-1)![1], size);
}

Deno.test("ranged download: on a slow link the rest comes as parallel ranges, the file and its hash the object's", async () => {
  const { random } = testRandom("LIFEBOAT_TEST_SEED");
  const dir = await tempDir();
  for (const size of [1, 999, 1000, 2999, 10_000, 12_345]) {
    const data = bytesOf(size);
    const asked: [number, number][] = [];
    const reading: Reading = { now: 0, most: 0 };
    const fetch: FetchRange = async (start, end) => {
      asked.push([start, end]);
      await new Promise((r) => setTimeout(r, Math.floor(random() * 5)));
      return streamOf(data.slice(start, end), 1 + Math.floor(random() * 4), reading);
    };
    const path = `${dir}/${size}`;
    const got = await downloadRanges(path, streamOf(data, 8, reading), fetch, {
      size,
      probeBytes: 1000,
      concurrency: 3,
      ...SLOW,
    });
    assert.deepEqual(got, { sha256: sha(data), size }, `size ${size}`);
    assert.deepEqual(await Deno.readFile(path), data);
    assert.ok(reading.most <= 3, `at most concurrency streams read at once (${reading.most})`);
    if (size >= 10_000) assert.ok(asked.length >= 2, "a large object is split");
    assertTiles(asked, size);
    assert.deepEqual(asked, [...asked].sort((a, b) => a[0] - b[0]), "ranges are asked in order");
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  }
});

Deno.test("ranged download: on a fast link one stream carries it all", async () => {
  const dir = await tempDir();
  const data = bytesOf(10_000);
  const asked: [number, number][] = [];
  const fetch: FetchRange = (s, e) => {
    asked.push([s, e]);
    return Promise.resolve(streamOf(data.slice(s, e)));
  };
  const got = await downloadRanges(`${dir}/f`, streamOf(data), fetch, {
    size: data.length,
    probeBytes: 1000,
    concurrency: 4,
    ...FAST,
  });
  assert.deepEqual(got, { sha256: sha(data), size: data.length });
  assert.deepEqual(asked, []);
});

Deno.test("ranged download: a stream that ends early ends the file's hashed part there", async () => {
  const dir = await tempDir();
  const data = bytesOf(12_000);
  const cuts: number[] = [];
  // Every range the download asks for ends 1 byte short.
  const fetch: FetchRange = (s, e) => {
    cuts.push(s);
    return Promise.resolve(streamOf(data.slice(s, e - 1)));
  };
  const got = await downloadRanges(`${dir}/f`, streamOf(data), fetch, {
    size: data.length,
    probeBytes: 1000,
    concurrency: 3,
    ...SLOW,
  });
  const [firstShort, second] = cuts.sort((a, b) => a - b);
  const each = second - firstShort;
  // None is handed out once one ended short: at most one per stream, and one asked ahead each.
  assert.ok(cuts.length <= 6, `ranges asked: ${cuts.length}`);
  assert.deepEqual(got, {
    sha256: sha(data.slice(0, firstShort + each - 1)),
    size: firstShort + each - 1,
  });
});

Deno.test("ranged download: a long, a failed or a stalled range throws and leaves no file", async () => {
  const dir = await tempDir();
  const data = bytesOf(12_000);
  const cases: [string, FetchRange, RegExp][] = [
    ["long", (s, e) => Promise.resolve(streamOf(data.slice(s, e + 1))), /more than the \d+ bytes/],
    ["failed", () => Promise.reject(new Error("connection reset")), /connection reset/],
    [
      "stalled",
      () => Promise.resolve(new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) })),
      /stalled: no data for 50 ms/,
    ],
  ];
  for (const [name, fetch, error] of cases) {
    const path = `${dir}/${name}`;
    await assert.rejects(
      downloadRanges(path, streamOf(data), fetch, {
        size: data.length,
        probeBytes: 1000,
        concurrency: 3,
        idleMs: 50,
        ...SLOW,
      }),
      error,
      name,
    );
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound, `${name}: no file left`);
  }
});

Deno.test("ranged download: a slow first stream is split after PROBE_MS, before its probe is in", async () => {
  const dir = await tempDir();
  const data = bytesOf(40_000);
  let sent = 0;
  // 500 bytes every 20 ms: a probe of 10,000 bytes would take 400 ms.
  const trickle = new ReadableStream<Uint8Array>({
    async pull(c) {
      await new Promise((r) => setTimeout(r, 20));
      if (sent >= data.length) return c.close();
      c.enqueue(data.slice(sent, sent + 500));
      sent += 500;
    },
  }, { highWaterMark: 0 });
  const asked: number[] = [];
  let sentAtSplit = -1;
  const fetch: FetchRange = (s, e) => {
    if (sentAtSplit < 0) sentAtSplit = sent;
    asked.push(s);
    return Promise.resolve(streamOf(data.slice(s, e)));
  };
  const got = await downloadRanges(`${dir}/f`, trickle, fetch, {
    size: data.length,
    probeBytes: 10_000,
    concurrency: 3,
  });
  assert.deepEqual(got, { sha256: sha(data), size: data.length });
  assert.ok(asked.length > 0, "the rest came as ranges");
  assert.ok(sentAtSplit < 10_000, `split once ${sentAtSplit} bytes came, before the probe`);
});
