/**
 * The SHA-256 of a file's bytes in file order, computed while they arrive out of order (parallel
 * ranges of one download): bytes that continue the hashed prefix are hashed as they arrive; bytes
 * ahead of it are hashed once the prefix reaches them, read back from the file (each chunk is
 * written before it is reported here).
 *
 * Why a pipeline and not a hash per range: SHA-256 cannot be combined from the hashes of parts,
 * and the writer recorded the hash of the whole file, so the bytes must pass through one hash in
 * order. Why not make the streams ahead wait for the one behind: over a link capped per
 * connection a paused stream is bandwidth lost for good. Why not hold the bytes ahead in memory
 * until their turn (a first version did, up to a budget): they were just written, so reading them
 * back comes from the page cache (a memory copy, ≈ 0.1 ms per MiB), while the copies held cost
 * about three times their size in peak RSS before the garbage collector returned them (16 MiB
 * held: +50 MiB, measured on a 1 GiB restore over the bench's WAN link), for no gain in time: the
 * hash finished within 2 ms of the last byte either way. What bounds the bytes waiting is the
 * downloader's window (ranged_download.ts: neighbouring ranges only), so the hash keeps pace.
 */
import { createHash, type Hash } from "node:crypto";

/** Bytes ahead of the hashed prefix, in the file, waiting for their turn. */
interface Piece {
  at: number;
  length: number;
}

/** Reads the file's bytes at `at` into `into`; resolves with the count read (0 at the end). */
export type ReadAt = (at: number, into: Uint8Array) => Promise<number>;

/**
 * Hashes a file's contiguous prefix as its bytes are reported (`arrived`, in any order, each
 * range's own bytes in order); `pos` is the prefix's length so far.
 */
export class OrderedHash {
  /** The length of the prefix hashed so far: every byte in [0, pos) went into the hash. */
  pos = 0;
  readonly #hash: Hash = createHash("sha256");
  /** Pieces ahead of `pos`, by their offset; they tile what arrived beyond the prefix. */
  readonly #ahead = new Map<number, Piece>();
  /** The same pieces by where they end, so the next chunk of the same range extends one. */
  readonly #ends = new Map<number, Piece>();
  /** Set while a drain runs (from before its first statement: it may finish synchronously). */
  #busy = false;
  #draining: Promise<void> = Promise.resolve();
  #failed: unknown;
  #waiters: (() => void)[] = [];
  readonly #scratch = new Uint8Array(1 << 20);

  /** `readAt` reads bytes ahead of the prefix back from the file once their turn comes. */
  constructor(private readonly readAt: ReadAt) {}

  /**
   * Reports `chunk`, already written to the file at offset `at` (it may be reused once this
   * returns). Never throws: a failed read-back is thrown by `finish`.
   */
  arrived(at: number, chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (at === this.pos && !this.#busy && !this.#ahead.has(at)) {
      this.#hash.update(chunk); // in order: hashed in flight
      this.pos += chunk.length;
      this.#advanced();
      return;
    }
    const before = this.#ends.get(at);
    if (before) {
      // The same range's next bytes (a range's own bytes come in order): one piece grows.
      this.#ends.delete(at);
      before.length += chunk.length;
      this.#ends.set(at + chunk.length, before);
    } else {
      const piece = { at, length: chunk.length };
      this.#ahead.set(at, piece);
      this.#ends.set(at + chunk.length, piece);
    }
    this.#drain();
  }

  /** Resolves once `pos` moved (or at once if hashing failed): for pacing the ranges ahead. */
  advanced(): Promise<void> {
    if (this.#failed !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Hashes what is contiguous from `pos` once every write is in, and resolves with the SHA-256
   * and length of the prefix (bytes beyond the first gap are left out). Throws if a read-back
   * failed.
   */
  async finish(): Promise<{ sha256: string; size: number }> {
    this.#drain();
    await this.#draining;
    if (this.#failed !== undefined) throw this.#failed;
    return { sha256: this.#hash.digest("hex"), size: this.pos };
  }

  /** Starts hashing the pieces that continue the prefix, unless that already runs. */
  #drain(): void {
    if (this.#busy || !this.#ahead.has(this.pos) || this.#failed !== undefined) return;
    this.#busy = true;
    this.#draining = (async () => {
      try {
        for (let p = this.#ahead.get(this.pos); p; p = this.#ahead.get(this.pos)) {
          await this.#hashFromFile(p);
          this.#advanced();
        }
      } catch (err) {
        this.#failed = err;
        this.#advanced();
      } finally {
        this.#busy = false;
      }
    })();
  }

  /**
   * Hashes a piece by reading it back and moves `pos` past it. It may grow while it is read (its
   * range goes on), so the piece is retired right after the read that finds it done, in the same
   * turn: after any `await` (even of this function's own promise) more may have been added.
   */
  async #hashFromFile(p: Piece): Promise<void> {
    for (let done = 0; done < p.length;) {
      const want = Math.min(this.#scratch.length, p.length - done);
      const n = await this.readAt(p.at + done, this.#scratch.subarray(0, want));
      if (n <= 0) {
        throw new Error(`the file ends before offset ${p.at + p.length} it was written to`);
      }
      this.#hash.update(this.#scratch.subarray(0, n));
      done += n;
    }
    this.#ahead.delete(p.at);
    this.#ends.delete(p.at + p.length);
    this.pos = p.at + p.length;
  }

  #advanced(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
