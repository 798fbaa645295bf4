/** The parallel ranged download: bytes in order whatever order ranges arrive in, and every
 * wrong answer (short, long, stalled, failed) an error, never a silently different file. */
import assert from "node:assert/strict";
import { type FetchRange, rangedStream } from "../src/store/ranged_stream.ts";
import { seededRandom } from "../testkit/random.ts";

const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 7 + 3) % 251);

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

async function collect(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  // Copy each chunk before asking for the next: the stream reuses its buffers.
  for await (const chunk of s) parts.push(chunk.slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) out.set(p, (off += p.length) - p.length);
  return out;
}

Deno.test("ranged stream: the bytes come out in order although ranges finish out of order", async () => {
  const random = seededRandom(7);
  for (const size of [1, 999, 1000, 1001, 10_000, 12_345]) {
    const data = bytesOf(size);
    const chunkSize = 1000;
    const asked: [number, number][] = [];
    let active = 0, most = 0;
    const fetch: FetchRange = async (start, end) => {
      asked.push([start, end]);
      most = Math.max(most, ++active);
      await new Promise((r) => setTimeout(r, Math.floor(random() * 5)));
      active--;
      return streamOf(data.slice(start, end), 1 + Math.floor(random() * 4));
    };
    const first = streamOf(data.slice(0, chunkSize));
    const out = await collect(rangedStream(first, fetch, { size, chunkSize, concurrency: 4 }));
    assert.deepEqual(out, data, `size ${size}`);
    const expected = Math.max(0, Math.ceil(size / chunkSize) - 1);
    assert.equal(asked.length, expected, `one request per range after the first (size ${size})`);
    assert.ok(most <= 4, `never more than concurrency ranges in flight (saw ${most})`);
  }
});

Deno.test("ranged stream: a range that ends early ends the stream there (the size check sees it)", async () => {
  const size = 5000, chunkSize = 1000;
  const data = bytesOf(size);
  const fetch: FetchRange = (s, e) =>
    Promise.resolve(streamOf(data.slice(s, s === 2000 ? e - 1 : e)));
  const first = streamOf(data.slice(0, chunkSize));
  const out = await collect(rangedStream(first, fetch, { size, chunkSize, concurrency: 2 }));
  assert.deepEqual(out, data.slice(0, 2999));
});

Deno.test("ranged stream: a long, a failed or a stalled range errors the stream", async () => {
  const size = 5000, chunkSize = 1000;
  const data = bytesOf(size);
  const cases: [string, FetchRange, RegExp][] = [
    ["long", (s, e) => Promise.resolve(streamOf(data.slice(s, e + 1))), /more than the 1000 bytes/],
    ["failed", () => Promise.reject(new Error("connection reset")), /connection reset/],
    [
      "stalled",
      () => Promise.resolve(new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) })),
      /stalled: no data for 50 ms/,
    ],
  ];
  for (const [name, fetch, error] of cases) {
    const first = streamOf(data.slice(0, chunkSize));
    const s = rangedStream(first, fetch, { size, chunkSize, concurrency: 3, idleMs: 50 });
    await assert.rejects(collect(s), error, name);
  }
});

Deno.test("ranged stream: cancelling it aborts every range in flight", async () => {
  const size = 10_000, chunkSize = 1000;
  const aborted: number[] = [];
  const fetch: FetchRange = (start, _end, signal) =>
    new Promise((_, reject) => {
      signal.addEventListener("abort", () => {
        aborted.push(start);
        reject(signal.reason);
      });
    });
  const s = rangedStream(streamOf(bytesOf(chunkSize)), fetch, { size, chunkSize, concurrency: 4 });
  const reader = s.getReader();
  const { value } = await reader.read();
  assert.equal(value?.length, chunkSize);
  await reader.cancel(new Error("restore stopped"));
  assert.deepEqual(aborted.sort((a, b) => a - b), [1000, 2000, 3000, 4000]);
});
