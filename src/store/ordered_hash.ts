/**
 * The SHA-256 of a file's bytes in file order, computed while they arrive out of order (parallel
 * ranges of one download), without reading the file back when they arrive in order.
 *
 * Why a pipeline and not a hash per range: SHA-256 cannot be combined from the hashes of parts,
 * and the writer recorded the hash of the whole file, so the bytes must pass through one hash in
 * order. Why not make the streams ahead wait for the one behind (the simplest in-order pipeline):
 * over a link capped per connection a paused stream is bandwidth lost for good, and the point of
 * parallel ranges is to keep every stream busy. So bytes ahead of the hashed prefix are kept in
 * memory up to a fixed budget and hashed from there once their turn comes; past the budget they
 * are only in the file (each chunk is written before it is reported here) and are read back from
 * it, from the page cache since they were just written. The downloader keeps the ranges in flight
 * close together (ranged_download.ts: a window of small ranges), so the budget covers the usual
 * lead and the read-back is the exception; memory never exceeds the budget either way.
 */
import { createHash, type Hash } from "node:crypto";

/** Bytes ahead of the hashed prefix, held until their turn: a copy, or only in the file. */
interface Piece {
  at: number;
  length: number;
  /** Undefined: the bytes are only in the file (spilled past the budget). */
  data?: Uint8Array;
}

/** Reads the file's bytes at `at` into `into`; resolves with the count read (0 at the end). */
export type ReadAt = (at: number, into: Uint8Array) => Promise<number>;

/** The default budget for bytes kept in memory ahead of the hashed prefix. */
export const AHEAD_BUDGET_BYTES = 16 * 1024 * 1024;

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
  /** Spilled pieces by where they end, so the next chunk of the same range extends them. */
  readonly #spillEnds = new Map<number, Piece>();
  #held = 0;
  /** Set while a drain runs (from before its first statement: it may finish synchronously). */
  #busy = false;
  #draining: Promise<void> = Promise.resolve();
  #failed: unknown;
  #waiters: (() => void)[] = [];
  readonly #scratch = new Uint8Array(1 << 20);

  /** `readAt` reads spilled bytes back from the file; `budget` caps the copies held. */
  constructor(private readonly readAt: ReadAt, private readonly budget = AHEAD_BUDGET_BYTES) {}

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
    const spill = this.#spillEnds.get(at);
    if (spill) {
      // This range already spilled: its later bytes follow in the file (order within a range).
      this.#spillEnds.delete(at);
      spill.length += chunk.length;
      this.#spillEnds.set(at + chunk.length, spill);
    } else if (this.#held + chunk.length <= this.budget) {
      this.#ahead.set(at, { at, length: chunk.length, data: chunk.slice() });
      this.#held += chunk.length;
    } else {
      const piece: Piece = { at, length: chunk.length };
      this.#ahead.set(at, piece);
      this.#spillEnds.set(at + chunk.length, piece);
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
          if (p.data) {
            this.#hash.update(p.data);
            this.#held -= p.length;
          } else await this.#hashFromFile(p);
          this.#ahead.delete(p.at);
          this.#spillEnds.delete(p.at + p.length);
          this.pos = p.at + p.length;
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

  /** Hashes a spilled piece by reading it back; it may grow while it is read (its range goes on). */
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
  }

  #advanced(): void {
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
