/**
 * One object's bytes as a single in-order stream, fetched as byte ranges over several
 * connections at once.
 *
 * Why by hand: a single GET is bounded by one connection's window (on a WAN link, the latency
 * and the per-connection cap), while S3 serves ranges of one object in parallel at full speed.
 * The SDK has no parallel download; `@aws-sdk/lib-storage` only uploads. Ranges are fetched
 * ahead into a fixed pool of buffers (concurrency + 1 of `chunkSize`), so memory stays flat at
 * any object size, and the consumer still reads (writes, hashes) the bytes strictly in order.
 */
import { TransientError } from "../errors.ts";
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
  /** Bytes per range (the first range is the one already opened). */
  chunkSize: number;
  /** Ranges in flight at once (including the one being read by the consumer). */
  concurrency: number;
  /** A range that brings no byte for this long fails (no limit if undefined). */
  idleMs?: number;
}

/**
 * Returns a stream of the object's bytes in order: `first` carries bytes [0, chunkSize) (the
 * response that told the size), the rest is fetched with `fetchRange`, `concurrency` ranges
 * ahead. A range that ends early ends the stream there, as a single GET's body would (the
 * consumer's size and SHA-256 checks reject the file); one that is long, fails or stalls errors
 * the stream. Cancelling it aborts every range in flight.
 */
export function rangedStream(
  first: ReadableStream<Uint8Array>,
  fetchRange: FetchRange,
  o: RangedOptions,
): ReadableStream<Uint8Array> {
  const count = Math.max(1, Math.ceil(o.size / o.chunkSize));
  const stop = new AbortController();
  const pool: Uint8Array[] = [];
  const inFlight = new Map<number, Promise<Uint8Array>>();
  let emitted = 0;

  const bounds = (n: number) => [n * o.chunkSize, Math.min(o.size, (n + 1) * o.chunkSize)];
  const start = (n: number) => {
    if (n >= count || inFlight.has(n)) return;
    const [from, to] = bounds(n);
    const buf = (pool.pop() ?? new Uint8Array(o.chunkSize)).subarray(0, to - from);
    const body = n === 0 ? Promise.resolve(first) : fetchRange(from, to, stop.signal);
    const filled = body.then((s) => readInto(s, buf, o.idleMs, `bytes ${from}-${to - 1}`));
    filled.catch(() => {}); // surfaced by pull(); never unhandled
    inFlight.set(n, filled);
  };

  let current: Uint8Array = new Uint8Array(0);
  let ended = false;
  /** The next range in order, once it has arrived; starts the one `concurrency` further. */
  const nextChunk = async (): Promise<Uint8Array> => {
    const n = emitted++;
    const chunk = await inFlight.get(n)!;
    inFlight.delete(n);
    const [from, to] = bounds(n);
    if (chunk.length < to - from) {
      // Ended early: so does the stream, as a single GET's body would.
      ended = true;
      stop.abort(new Error("an earlier range ended early"));
    } else start(n + o.concurrency);
    return chunk;
  };

  // A byte stream: each read copies into the consumer's buffer (or a fresh one), so the range
  // buffers go back to the pool at once and no consumer can see one being refilled.
  return new ReadableStream({
    type: "bytes",
    autoAllocateChunkSize: 1 << 20,
    start() {
      for (let n = 0; n < Math.min(count, o.concurrency); n++) start(n);
    },
    async pull(controller) {
      try {
        if (current.length === 0) {
          if (ended || emitted >= count) {
            controller.close();
            controller.byobRequest?.respond(0);
            return;
          }
          current = await nextChunk();
        }
        const view = controller.byobRequest!.view!;
        const into = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
        const n = Math.min(into.length, current.length);
        into.set(current.subarray(0, n));
        current = current.subarray(n);
        if (current.length === 0) pool.push(new Uint8Array(current.buffer));
        controller.byobRequest!.respond(n);
      } catch (err) {
        stop.abort(err);
        controller.error(err);
      }
    },
    cancel(reason) {
      stop.abort(reason);
      first.cancel(reason).catch(() => {});
    },
    // pull() runs only when the consumer asks: ranges are fetched ahead, bytes are not queued.
  }, { highWaterMark: 0 });
}

/**
 * Reads `stream` into `buf` and returns the part filled (shorter when the stream ended early);
 * throws when it brings more than `buf` holds or stays silent for `idleMs`.
 */
async function readInto(
  stream: ReadableStream<Uint8Array>,
  buf: Uint8Array,
  idleMs: number | undefined,
  what: string,
): Promise<Uint8Array> {
  const reader = stream.getReader();
  let off = 0;
  try {
    for (;;) {
      const { value, done } =
        await (idleMs === undefined ? reader.read() : withinIdle(reader.read(), idleMs));
      if (done) break;
      if (off + value.length > buf.length) {
        throw new TransientError(
          `the store sent more than the ${buf.length} bytes of ${what}`,
          "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
        );
      }
      buf.set(value, off);
      off += value.length;
    }
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    throw err;
  }
  return buf.subarray(0, off);
}
