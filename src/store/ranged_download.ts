/**
 * One object downloaded into a file as a few large byte ranges over parallel connections, each
 * streamed straight to its offset, and hashed in order by reading back what has arrived.
 *
 * Why by hand: a single GET is bounded by one connection's window (on a WAN link, the latency and
 * the per-connection cap), while S3 serves ranges of one object in parallel at full speed; the
 * SDK has no parallel download. Why few large ranges, written at their offsets, rather than many
 * small ones kept in memory until their turn: memory stays flat (no range is buffered), and a
 * server that pays for the whole object on every ranged GET (moto reads it all, then slices)
 * answers a handful of requests, not one per 8 MiB. The read-back for the hash comes from the
 * page cache: the bytes were just written.
 */
import { createHash } from "node:crypto";
import { TransientError } from "../errors.ts";
import { removeIfExists } from "../fsutil.ts";
import { withinIdle } from "./stall.ts";

/** Fetches the bytes [start, end) of the object; the stream must yield exactly that many. */
export type FetchRange = (
  start: number,
  end: number,
  signal: AbortSignal,
) => Promise<ReadableStream<Uint8Array>>;

/** How to split and pace the download. */
export interface RangedOptions {
  /** The object's size in bytes. */
  size: number;
  /** How many bytes `first` carries: [0, firstBytes). */
  firstBytes: number;
  /** Ranges in flight at once besides `first`; the rest of the object is split into this many. */
  concurrency: number;
  /** A range that brings no byte for this long fails (no limit if undefined). */
  idleMs?: number;
}

/** What landed in the file: the SHA-256 and length of its contiguous bytes from offset 0. */
export interface Downloaded {
  sha256: string;
  size: number;
}

/**
 * Writes the object into the new file `path` (mode 0600, never replacing one): `first` carries
 * its first `firstBytes`, the rest comes as `concurrency` ranges fetched at once, each written at
 * its offset. Returns the SHA-256 and length of the bytes from offset 0 up to the first gap: a
 * range that ends early ends the file there, as a single GET's body would (the caller's size and
 * SHA-256 checks reject it). One that brings more than asked, fails or stalls aborts the others,
 * removes the file and throws. The file is fsynced before this resolves.
 */
export async function downloadRanges(
  path: string,
  first: ReadableStream<Uint8Array>,
  fetchRange: FetchRange,
  o: RangedOptions,
): Promise<Downloaded> {
  const stop = new AbortController();
  const ranges = split(o);
  const got = ranges.map(() => 0); // bytes of each range written so far
  const done = ranges.map(() => false);
  let notify: (() => void) | undefined;
  const progressed = () => {
    notify?.();
    notify = undefined;
  };
  const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
  file.close();
  try {
    const writers = ranges.map(async ([from, to], i) => {
      try {
        const body = i === 0 ? first : await fetchRange(from, to, stop.signal);
        await writeAt(path, from, to - from, body, stop.signal, o.idleMs, (n) => {
          got[i] += n;
          progressed();
        });
        done[i] = true;
        progressed();
      } catch (err) {
        if (!stop.signal.aborted) stop.abort(err);
        progressed();
        throw err;
      }
    });
    writers.forEach((w) => w.catch(() => {})); // reported below, through `stop`
    const hashed = await hashInOrder(
      path,
      ranges,
      got,
      done,
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
    await removeIfExists(path).catch(() => {});
    throw err;
  }
}

/** [from, to) of each range: the first one's bytes, then the rest in `concurrency` parts. */
function split(o: RangedOptions): [number, number][] {
  const out: [number, number][] = [[0, Math.min(o.firstBytes, o.size)]];
  const rest = o.size - out[0][1];
  const n = Math.max(1, Math.min(o.concurrency, rest));
  const each = Math.ceil(rest / n);
  for (let from = out[0][1]; from < o.size; from += each) {
    out.push([from, Math.min(o.size, from + each)]);
  }
  return out;
}

/** Streams `body` into `path` at `offset`; throws when it brings more than `length` bytes. */
async function writeAt(
  path: string,
  offset: number,
  length: number,
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  idleMs: number | undefined,
  wrote: (n: number) => void,
): Promise<void> {
  using f = await Deno.open(path, { write: true });
  await f.seek(offset, Deno.SeekMode.Start);
  const reader = body.getReader();
  let total = 0;
  try {
    for (;;) {
      signal.throwIfAborted();
      const read = reader.read();
      const { value, done } = await (idleMs === undefined ? read : withinIdle(read, idleMs));
      if (done) break;
      total += value.length;
      if (total > length) {
        throw new TransientError(
          `the store sent more than the ${length} bytes asked for at offset ${offset}`,
          "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
        );
      }
      for (let off = 0; off < value.length;) off += await f.write(value.subarray(off));
      wrote(value.length);
    }
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    throw err;
  }
}

/**
 * Hashes the file from offset 0 as the ranges fill it, in order, reading back what was written;
 * stops at the first range that ended short. Resolves with the hash and the bytes hashed.
 */
async function hashInOrder(
  path: string,
  ranges: [number, number][],
  got: number[],
  done: boolean[],
  signal: AbortSignal,
  changed: () => Promise<void>,
): Promise<Downloaded> {
  const hash = createHash("sha256");
  const buf = new Uint8Array(1 << 20);
  using f = await Deno.open(path, { read: true });
  let pos = 0;
  for (let i = 0; i < ranges.length; i++) {
    const [from] = ranges[i];
    for (;;) {
      signal.throwIfAborted();
      const until = from + got[i];
      if (pos < until) {
        await f.seek(pos, Deno.SeekMode.Start);
        const n = await f.read(buf.subarray(0, Math.min(buf.length, until - pos)));
        if (n === null) throw new Error(`${path} is shorter than the bytes written into it`);
        hash.update(buf.subarray(0, n));
        pos += n;
        continue;
      }
      if (done[i]) break;
      await changed();
    }
    if (pos < ranges[i][1]) break; // ended early: so does the file's contiguous part
  }
  return { sha256: hash.digest("hex"), size: pos };
}
