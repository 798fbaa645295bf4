/** The in-order hash of bytes that arrive out of order: always the SHA-256 of the file's
 * contiguous prefix, in flight when bytes come in order, read back from the file when they came
 * ahead of it. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { OrderedHash } from "../src/store/ordered_hash.ts";
import { testRandom } from "../testkit/random.ts";

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");
const bytesOf = (size: number) => Uint8Array.from({ length: size }, (_, i) => (i * 13 + 5) % 251);

/** A hash over `data` as "the file", counting the bytes read back from it. */
function hashOver(data: Uint8Array) {
  const read = { bytes: 0 };
  const h = new OrderedHash(async (at, into) => {
    await new Promise((r) => setTimeout(r, 0)); // a read takes a turn of the event loop
    const n = Math.min(into.length, data.length - at);
    into.set(data.subarray(at, at + n));
    read.bytes += n;
    return n;
  });
  return { h, read };
}

/** Delivers `ranges` of `data` interleaved at random, each range's chunks in order. */
async function deliver(
  h: OrderedHash,
  data: Uint8Array,
  ranges: [number, number][],
  random: () => number,
) {
  const at = ranges.map(([from]) => from);
  for (;;) {
    const open = ranges.map((_, i) => i).filter((i) => at[i] < ranges[i][1]);
    if (open.length === 0) return;
    const i = open[Math.floor(random() * open.length)];
    const n = Math.min(ranges[i][1] - at[i], 1 + Math.floor(random() * 700));
    const chunk = data.slice(at[i], at[i] + n);
    h.arrived(at[i], chunk);
    chunk.fill(0); // the caller reuses its buffer once arrived returns
    at[i] += n;
    // Sometimes a turn of the event loop, sometimes a microtask: arrivals and read-backs
    // interleave in many ways.
    if (random() < 0.3) await new Promise((r) => setTimeout(r, 0));
    else await Promise.resolve();
  }
}

Deno.test("ordered hash: ranges interleaved at random hash as the whole file", async () => {
  const { random, replay } = testRandom("LIFEBOAT_TEST_SEED");
  const data = bytesOf(50_000);
  const tilings = [[0, 50_000], [0, 25_000, 50_000], [0, 3000, 9000, 9001, 20_000, 33_333, 50_000]];
  for (const cuts of tilings) {
    const { h, read } = hashOver(data);
    const ranges = cuts.slice(1).map((to, i) => [cuts[i], to] as [number, number]);
    await deliver(h, data, ranges, random);
    const got = await h.finish();
    assert.deepEqual(got, { sha256: sha(data), size: data.length }, `${cuts}, ${replay}`);
    assert.ok(read.bytes <= data.length - cuts[1], "the first range is never read back");
  }
});

Deno.test("ordered hash: bytes in order are hashed in flight, never read back", async () => {
  const data = bytesOf(10_000);
  const { h, read } = hashOver(data);
  for (let at = 0; at < data.length; at += 777) {
    h.arrived(at, data.slice(at, Math.min(data.length, at + 777)));
    assert.equal(h.pos, Math.min(data.length, at + 777));
  }
  assert.deepEqual(await h.finish(), { sha256: sha(data), size: data.length });
  assert.equal(read.bytes, 0);
});

Deno.test("ordered hash: a gap ends the hashed prefix", async () => {
  const data = bytesOf(9000);
  const { h } = hashOver(data);
  h.arrived(0, data.slice(0, 2000));
  h.arrived(5000, data.slice(5000, 9000)); // [2000, 5000) never comes
  assert.deepEqual(await h.finish(), { sha256: sha(data.slice(0, 2000)), size: 2000 });
});
