/**
 * One object downloaded into a file: one GET of the whole object, and when its first bytes show a
 * slow connection, the rest also as ranges over parallel connections. Every stream writes straight
 * to its offset and reports its bytes to an in-order hash (ordered_hash.ts), so the SHA-256 is
 * ready when the last byte lands; the file is flushed to disk as it fills (write_behind.ts).
 *
 * Why by hand: a single GET is bounded by one connection's window (on a WAN link, the latency and
 * the per-connection cap), while S3 serves ranges of one object in parallel at full speed; the
 * SDK has no parallel download. Why only when the link is slow: over a fast link (the same data
 * centre, a local server) extra requests only cost (moto reads the whole object again for every
 * ranged GET), so one stream it stays. Why a window of ranges of a few parts each, handed out in
 * order, rather than one large range per connection: the hash must take the bytes in file order,
 * and with `concurrency` streams working on neighbouring ranges the bytes arrive nearly in order
 * (the hash keeps pace, reading back little), where a quarter of the file per stream would leave
 * three quarters to hash after the last byte arrived. Each range costs one request, hence
 * ranges of several parts (shrinking towards the end: RANGES_PER_STREAM), each asked for before
 * the stream's current one ends (PREFETCH_PARTS).
 */
import { TransientError } from "../errors.ts";
import { chunksOf, type ReadGuard, removeIfExists } from "../fsutil.ts";
import { OrderedHash } from "./ordered_hash.ts";
import { withinIdle } from "./stall.ts";
import { WriteBehind } from "./write_behind.ts";

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
  /** Bytes of `first` read at most before deciding whether the rest comes in parallel. */
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

/**
 * The probe's longest time, from its first byte: the rate is judged then even if fewer than
 * `probeBytes` came. Why: on a slow link the probe's bytes are the ones read alone (at 40 MiB/s,
 * 8 MiB take 200 ms while the other streams could already run); 100 ms of a fast link's stream
 * (≥ 12.8 MiB at the threshold) is long enough not to mistake a scheduling hiccup for a slow link.
 */
export const PROBE_MS = 100;

/**
 * A range is what is left divided by `concurrency × RANGES_PER_STREAM`, between 1 and
 * MAX_RANGE_PARTS parts (`probeBytes`). Why shrinking: large ranges mean few requests (each costs
 * a round trip with its stream idle), but the last ones decide when the download ends, and a
 * stream that took a large range last runs alone while the others are done; ranges that shrink
 * with what is left (guided self-scheduling) end the streams close together.
 */
const RANGES_PER_STREAM = 2, MAX_RANGE_PARTS = 8;

/**
 * A stream asks for its next range when this many parts (`probeBytes`) of its current one are
 * left. Why: a range asked for only once the last one ended leaves the stream idle for a round
 * trip and the server's time to first byte (≈ 50–100 ms over the bench's WAN link, several times
 * per stream on 1 GiB); asked for half a part early (4 MiB: 100 ms at 40 MiB/s), its headers are
 * in when the current range ends. Its body waits unread meanwhile (the connection's own buffers).
 */
const PREFETCH_PARTS = 0.5;

/** What landed in the file: the SHA-256 and length of its contiguous bytes from offset 0. */
export interface Downloaded {
  sha256: string;
  size: number;
}

/** A range asked for: its part and the body that brings it. */
interface Fetched {
  part: Part;
  body: ReadableStream<Uint8Array>;
}

/** One stream's share of the file and how far it got; `to` may move closer (the first one's). */
interface Part {
  from: number;
  to: number;
  got: number;
}

/**
 * Writes the object into the new file `path` (mode 0600, never replacing one). `first` is a GET of
 * the whole object; once its first `probeBytes` (or PROBE_MS of it) arrived slower than the
 * threshold, it stops at the end of its first range and the rest comes as ranges, at most
 * `concurrency` streams at once, each written at its offset. Returns the SHA-256 and length of
 * the bytes from offset 0 up to the first gap: a stream that ends early ends the file there, as a
 * single GET's body would (the caller's size and SHA-256 checks reject it). One that brings more
 * than asked, fails or stalls aborts the others, removes the file and throws. The file is fsynced
 * before this resolves.
 */
export async function downloadRanges(
  path: string,
  first: ReadableStream<Uint8Array>,
  fetchRange: FetchRange,
  o: RangedOptions,
): Promise<Downloaded> {
  const stop = new AbortController();
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true, write: true, createNew: true, mode: 0o600 });
  } catch (err) {
    await first.cancel(err).catch(() => {});
    throw err;
  }
  const hash = new OrderedHash((at, into) => readAt(file, at, into));
  const flush = new WriteBehind(file);
  const plan = new Plan(o, hash, stop.signal);
  const slots: Promise<void>[] = [];
  /** The next range the plan hands out, asked for; undefined when none is left. */
  const fetchNext = (): Promise<Fetched | undefined> => {
    const next = (async () => {
      const part = await plan.claim();
      return part && { part, body: await fetchRange(part.from, part.to, stop.signal) };
    })();
    next.catch(() => {}); // awaited (and so thrown) by the stream it is for, or cancelled
    return next;
  };
  /** Runs one stream: `first` if given, then the ranges the plan hands out, in turn. */
  const slot = (first?: Fetched) => {
    const run = (async () => {
      using f = await Deno.open(path, { write: true });
      let ahead: Promise<Fetched | undefined> | undefined;
      try {
        for (let cur = first ?? await fetchNext(); cur; cur = await (ahead ?? fetchNext())) {
          const p = cur.part;
          ahead = undefined;
          await writeAt(f, p, cur.body, stop.signal, o.idleMs, (at, chunk) => {
            hash.arrived(at, chunk);
            flush.wrote(chunk.length);
            if (p === plan.head) plan.probed(p, (streams) => repeat(streams, () => slot()));
            // Ask for the next range a round trip before this one ends (see PREFETCH_PARTS).
            if (!ahead && p.to - p.from - p.got <= o.probeBytes * PREFETCH_PARTS) {
              ahead = fetchNext();
            }
          });
          // Ended early: nothing past it can be part of the file's contiguous bytes.
          if (p.from + p.got < p.to) return plan.endAt(p.from + p.got);
        }
      } finally {
        // A range asked for ahead and never read (a failure, or one that ended short).
        ahead?.then((next) => next?.body.cancel().catch(() => {}), () => {});
      }
    })();
    // Never rejects: the first failure aborts the rest and is thrown below, through `stop`.
    slots.push(run.catch((err) => {
      if (!stop.signal.aborted) stop.abort(err);
    }));
  };
  /** Waits for every slot, including those started while waiting. */
  const allSettled = async () => {
    for (let seen = 0; seen < slots.length;) {
      const upTo = slots.length;
      await Promise.all(slots.slice(seen, upTo));
      seen = upTo;
    }
  };
  try {
    slot({ part: plan.head, body: first });
    await allSettled();
    if (stop.signal.aborted) throw stop.signal.reason;
    const hashed = await hash.finish();
    await flush.done();
    file.close();
    return hashed;
  } catch (err) {
    if (!stop.signal.aborted) stop.abort(err);
    await allSettled(); // nothing writes after the failure is reported
    await flush.settle();
    file.close();
    await removeIfExists(path).catch(() => {});
    throw err;
  }
}

/** Which bytes come next: the first stream's share, the probe's verdict, the ranges after it. */
class Plan {
  readonly head: Part;
  #decided = false;
  #firstAt = 0;
  #firstBytes = 0;
  #next: number;
  #end: number;
  /** The largest range (the first ones); the window ahead of the hash is counted in it. */
  #maxRange = 0;
  #changed: (() => void)[] = [];

  constructor(
    private readonly o: RangedOptions,
    private readonly hash: OrderedHash,
    private readonly signal: AbortSignal,
  ) {
    this.head = { from: 0, to: o.size, got: 0 };
    this.#next = this.#end = o.size;
    signal.addEventListener("abort", () => this.#wake(), { once: true });
  }

  /**
   * After each chunk of the first stream: once the probe is in, decides whether the rest comes
   * in parallel; if so cuts the first stream and calls `start` with the streams to add.
   */
  probed(head: Part, start: (streams: number) => void): void {
    if (this.#decided) return;
    const now = performance.now();
    if (this.#firstAt === 0) {
      // The rate counts from the first chunk: the time to it is the server's, not the link's.
      [this.#firstAt, this.#firstBytes] = [now, head.got];
      if (head.got < this.o.probeBytes) return;
    }
    const ms = now - this.#firstAt;
    if (head.got < this.o.probeBytes && ms < PROBE_MS) return;
    this.#decided = true;
    // The whole probe in the first chunk: as fast as it gets.
    const mibPerS = ms < 1 ? Infinity : (head.got - this.#firstBytes) / 1024 / 1024 / (ms / 1000);
    const rest = this.o.size - head.got;
    const streams = Math.min(this.o.concurrency, Math.floor(rest / this.o.probeBytes));
    if (mibPerS > (this.o.oneStreamAboveMiBPerS ?? ONE_STREAM_ABOVE_MIB_PER_S) || streams < 2) {
      return;
    }
    this.#maxRange = this.#rangeAt(head.got);
    head.to = Math.min(this.o.size, head.got + this.#maxRange); // the first stream stops there
    this.#next = head.to;
    start(streams - 1);
  }

  /**
   * The next range to fetch, in order, once it is within the window ahead of the hashed prefix;
   * undefined when none is left (or the download stopped).
   */
  async claim(): Promise<Part | undefined> {
    const window = (this.o.concurrency + 1) * this.#maxRange;
    for (;;) {
      if (this.signal.aborted || this.#next >= this.#end) return undefined;
      if (this.#next < this.hash.pos + window) break;
      await Promise.race([this.hash.advanced(), new Promise<void>((r) => this.#changed.push(r))]);
    }
    const part = {
      from: this.#next,
      to: Math.min(this.#end, this.#next + this.#rangeAt(this.#next)),
      got: 0,
    };
    this.#next = part.to;
    return part;
  }

  /** The length of the range that starts at `from` (see RANGES_PER_STREAM). */
  #rangeAt(from: number): number {
    const share = Math.ceil((this.o.size - from) / (this.o.concurrency * RANGES_PER_STREAM));
    return Math.min(MAX_RANGE_PARTS * this.o.probeBytes, Math.max(this.o.probeBytes, share));
  }

  /** A stream ended short at `at`: no range past it is handed out. */
  endAt(at: number): void {
    this.#end = Math.min(this.#end, at);
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#changed.splice(0)) wake();
  }
}

/** Calls `fn` `n` times. */
function repeat(n: number, fn: () => void): void {
  for (let i = 0; i < n; i++) fn();
}

/** Reads the file's bytes at `at` into `into` (for the hash's read-back). */
async function readAt(file: Deno.FsFile, at: number, into: Uint8Array): Promise<number> {
  await file.seek(at, Deno.SeekMode.Start);
  return (await file.read(into)) ?? 0;
}

/**
 * Streams `body` into `f` from `p.from`, counting into `p.got`, until it ends or reaches `p.to`
 * (which may move closer while it runs: the rest is then cancelled, not an error); calls `wrote`
 * with each chunk once it is in the file; throws when it brings bytes past what was asked.
 */
async function writeAt(
  f: Deno.FsFile,
  p: Part,
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal,
  idleMs: number | undefined,
  wrote: (at: number, chunk: Uint8Array) => void,
): Promise<void> {
  await f.seek(p.from, Deno.SeekMode.Start);
  const limit = p.to; // past the end asked for is an error; before it, a cut
  const guard: ReadGuard | undefined = idleMs === undefined
    ? undefined
    : (read) => withinIdle(read, idleMs);
  if (signal.aborted) {
    await body.cancel(signal.reason).catch(() => {});
    signal.throwIfAborted();
  }
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
    const at = p.from + p.got;
    p.got += keep.length;
    wrote(at, keep);
    if (p.from + p.got >= p.to) break; // `p.to` may have moved closer: the rest is others'
  }
}
