/**
 * One object downloaded into a file: one GET of the whole object, and when its first bytes show a
 * slow connection, a few more ranges of the rest at once over parallel connections. Each stream
 * is written straight to its offset; the file is hashed in order by reading back what arrived.
 *
 * Why by hand: a single GET is bounded by one connection's window (on a WAN link, the latency and
 * the per-connection cap), while S3 serves ranges of one object in parallel at full speed; the
 * SDK has no parallel download. Why only when the link is slow, and only a few large ranges:
 * over a fast link (the same data centre, a local server) extra requests only cost (moto reads
 * the whole object again for every ranged GET), so one stream it stays; and large ranges written
 * at their offsets keep memory flat (nothing waits in memory for its turn). The read-back for the
 * hash comes from the page cache: the bytes were just written.
 */
import { createHash } from "node:crypto";
import { TransientError } from "../errors.ts";
import { chunksOf, type ReadGuard, removeIfExists } from "../fsutil.ts";
import { withinIdle } from "./stall.ts";

/** Fetches the bytes [start, end) of the object; the stream must yield exactly that many. */
export type FetchRange = (
  start: number,
  end: number,
  signal: AbortSignal,
) => Promise<ReadableStream<Uint8Array>>;

/** How to probe, split and pace the download. */
export interface RangedOptions {
  /** The object's size in bytes (the whole object is what `first` carries). */
  size: number;
  /** Bytes of `first` read before deciding whether the rest comes in parallel. */
  probeBytes: number;
  /** Streams at once when the link is slow (`first` included). */
  concurrency: number;
  /** A stream that brings no byte for this long fails (no limit if undefined). */
  idleMs?: number;
  /** A probe faster than this keeps one stream (ONE_STREAM_ABOVE_MIB_PER_S). */
  oneStreamAboveMiBPerS?: number;
}

/**
 * A probe faster than this keeps one stream. Measured (BENCHMARKS.md, issue 14): over loopback
 * moto and radosgw read fastest in one stream; a link capped at 40 MiB/s per connection reads
 * about `concurrency` times faster in parallel.
 */
export const ONE_STREAM_ABOVE_MIB_PER_S = 128;

/** What landed in the file: the SHA-256 and length of its contiguous bytes from offset 0. */
export interface Downloaded {
  sha256: string;
  size: number;
}

/** One stream's share of the file and how far it got. */
interface Part {
  from: number;
  to: number;
  got: number;
  done: boolean;
}

/**
 * Writes the object into the new file `path` (mode 0600, never replacing one). `first` is a GET of
 * the whole object; once `probeBytes` of it arrived slower than the threshold, it stops at the
 * end of its share and the rest comes as `concurrency - 1` ranges at once, each written at its
 * offset. Returns the SHA-256 and length of the bytes from offset 0 up to the first gap: a stream
 * that ends early ends the file there, as a single GET's body would (the caller's size and SHA-256
 * checks reject it). One that brings more than asked, fails or stalls aborts the others, removes
 * the file and throws. The file is fsynced before this resolves.
 */
export async function downloadRanges(
  path: string,
  first: ReadableStream<Uint8Array>,
  fetchRange: FetchRange,
  o: RangedOptions,
): Promise<Downloaded> {
  const stop = new AbortController();
  const parts: Part[] = [{ from: 0, to: o.size, got: 0, done: false }];
  let planned = false; // whether more parts may still come
  let notify: (() => void) | undefined;
  const progressed = () => {
    notify?.();
    notify = undefined;
  };
  const writers: Promise<void>[] = [];
  const started = performance.now();
  /** Decides, once the probe arrived, whether the rest comes in parallel; adds those parts. */
  const decide = () => {
    planned = true;
    const mibPerS = parts[0].got / 1024 / 1024 / ((performance.now() - started) / 1000);
    const n = Math.max(
      1,
      Math.min(o.concurrency, Math.floor((o.size - parts[0].got) / o.probeBytes)),
    );
    if (mibPerS > (o.oneStreamAboveMiBPerS ?? ONE_STREAM_ABOVE_MIB_PER_S) || n < 2) return;
    const at = parts[0].got;
    const each = Math.ceil((o.size - at) / n);
    parts[0].to = at + each; // the first stream stops there
    for (let from = at + each; from < o.size; from += each) {
      const part = { from, to: Math.min(o.size, from + each), got: 0, done: false };
      parts.push(part);
      write(part, () => fetchRange(part.from, part.to, stop.signal));
    }
  };
  const write = (p: Part, body: () => Promise<ReadableStream<Uint8Array>>) => {
    const w = (async () => {
      try {
        await writeAt(path, p, await body(), stop.signal, o.idleMs, () => {
          if (!planned && p === parts[0] && p.got >= o.probeBytes) decide();
          progressed();
        });
        p.done = true;
        planned = true;
        progressed();
      } catch (err) {
        if (!stop.signal.aborted) stop.abort(err);
        progressed();
        throw err;
      }
    })();
    w.catch(() => {}); // reported below, through `stop`
    writers.push(w);
  };
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  file.close();
  try {
    write(parts[0], () => Promise.resolve(first));
    const hashed = await hashInOrder(
      path,
      parts,
      () => planned,
      stop.signal,
      () => new Promise<void>((r) => (notify = r)),
    );
    // Wait for every writer, so nothing writes after a failure is reported.
    await Promise.allSettled(writers);
    if (stop.signal.aborted) throw stop.signal.reason;
    using f = await Deno.open(path, { read: true, write: true });
    await f.sync();
    return hashed;
  } catch (err) {
    stop.abort(err);
    await Promise.allSettled(writers);
    await removeIfExists(path).catch(() => {});
    throw err;
  }
}

/**
 * Streams `body` into `path` from `p.from`, counting into `p.got`, until it ends or reaches `p.to`
 * (which may move closer while it runs: the rest is then cancelled, not an error); throws when it
 * brings bytes past the object's end.
 */
async function writeAt(
  path: string,
  p: Part,
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  idleMs: number | undefined,
  wrote: () => void,
): Promise<void> {
  using f = await Deno.open(path, { write: true });
  await f.seek(p.from, Deno.SeekMode.Start);
  const limit = p.to; // past the object's end is an error; before it, a cut
  const guard: ReadGuard | undefined = idleMs === undefined
    ? undefined
    : (read) => withinIdle(read, idleMs);
  signal.throwIfAborted();
  // Leaving the loop (done, cut, or an error) cancels the rest of `body`.
  for await (const value of chunksOf(body, guard)) {
    signal.throwIfAborted();
    if (p.from + p.got + value.length > limit) {
      throw new TransientError(
        `the store sent more than the ${limit - p.from} bytes asked for at offset ${p.from}`,
        "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
      );
    }
    const keep = value.subarray(0, Math.min(value.length, p.to - p.from - p.got));
    for (let off = 0; off < keep.length;) off += await f.write(keep.subarray(off));
    p.got += keep.length;
    wrote();
    if (p.from + p.got >= p.to) break; // `p.to` may have moved closer: the rest is others'
  }
}

/**
 * Hashes the file from offset 0 as the parts fill it, in order, reading back what was written;
 * stops at the first part that ended short. Resolves with the hash and the bytes hashed.
 */
async function hashInOrder(
  path: string,
  parts: Part[],
  planned: () => boolean,
  signal: AbortSignal,
  changed: () => Promise<void>,
): Promise<Downloaded> {
  const hash = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  using f = await Deno.open(path, { read: true });
  let pos = 0;
  for (let i = 0;; i++) {
    while (i >= parts.length && !planned()) {
      signal.throwIfAborted();
      await changed();
    }
    if (i >= parts.length) break;
    const p = parts[i];
    for (;;) {
      signal.throwIfAborted();
      const until = p.from + p.got;
      if (pos < until) {
        await f.seek(pos, Deno.SeekMode.Start);
        const n = await f.read(buf.subarray(0, Math.min(buf.length, until - pos)));
        if (n === null) throw new Error(`${path} is shorter than the bytes written into it`);
        hash.update(buf.subarray(0, n));
        pos += n;
        continue;
      }
      if (p.done) break;
      await changed();
    }
    if (pos < p.to) break; // ended early: so does the file's contiguous part
  }
  return { sha256: hash.digest("hex"), size: pos };
}
