/** The parallel ranged download: the file and its SHA-256 are the object's whatever order ranges
 * arrive in, and every wrong answer (short, long, stalled, failed) is caught, never a silently
 * different file. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { downloadRanges, type FetchRange } from "../src/store/ranged_download.ts";
import { testRandom } from "../testkit/random.ts";
import { tempDir } from "../testkit/scene.ts";

const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) % 251);
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

function streamOf(bytes: Uint8Array, pieces = 3): ReadableStream<Uint8Array> {
  const step = Math.max(1, Math.ceil(bytes.length / pieces));
  let off = 0;
  return new ReadableStream({
    pull(c) {
      if (off >= bytes.length) return c.close();
      c.enqueue(bytes.slice(off, off + step));
      off += step;
    },
  });
}

Deno.test("ranged download: the file and its hash are the object's, ranges finishing in any order", async () => {
  const { random } = testRandom("LIFEBOAT_TEST_SEED");
  const dir = await tempDir();
  for (const size of [1, 999, 1000, 1001, 10_000, 12_345]) {
    const data = bytesOf(size);
    const asked: [number, number][] = [];
    const fetch: FetchRange = async (start, end) => {
      asked.push([start, end]);
      await new Promise((r) => setTimeout(r, Math.floor(random() * 5)));
      return streamOf(data.slice(start, end), 1 + Math.floor(random() * 4));
    };
    const path = `${dir}/${size}`;
    const first = streamOf(data.slice(0, 1000));
    const got = await downloadRanges(path, first, fetch, {
      size,
      firstBytes: 1000,
      concurrency: 3,
    });
    assert.deepEqual(got, { sha256: sha(data), size }, `size ${size}`);
    assert.deepEqual(await Deno.readFile(path), data);
    assert.ok(asked.length <= 3, `at most concurrency ranges after the first (${asked.length})`);
    assert.equal(asked.reduce((n, [s, e]) => n + e - s, 0), Math.max(0, size - 1000));
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  }
});

Deno.test("ranged download: a range that ends early ends the file's hashed part there", async () => {
  const dir = await tempDir();
  const size = 4000;
  const data = bytesOf(size);
  // The rest (3000 bytes) comes as ranges of 1000: the one at 2000 ends 1 byte short.
  const fetch: FetchRange = (s, e) =>
    Promise.resolve(streamOf(data.slice(s, s === 2000 ? e - 1 : e)));
  const got = await downloadRanges(`${dir}/f`, streamOf(data.slice(0, 1000)), fetch, {
    size,
    firstBytes: 1000,
    concurrency: 3,
  });
  assert.deepEqual(got, { sha256: sha(data.slice(0, 2999)), size: 2999 });
});

Deno.test("ranged download: a long, a failed or a stalled range throws and leaves no file", async () => {
  const dir = await tempDir();
  const size = 5000;
  const data = bytesOf(size);
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
    const first = streamOf(data.slice(0, 1000));
    await assert.rejects(
      downloadRanges(path, first, fetch, { size, firstBytes: 1000, concurrency: 2, idleMs: 50 }),
      error,
      name,
    );
    await assert.rejects(Deno.stat(path), Deno.errors.NotFound, `${name}: no file left`);
  }
});
