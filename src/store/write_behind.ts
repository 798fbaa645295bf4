/**
 * Flushing a file to disk while it is still being written, so that the fsync which makes it
 * durable at the end finds little left to write.
 *
 * Why: a download of 1 GiB stays below the kernel's background writeback threshold (a tenth of
 * RAM), so without this all of it is still dirty when the last byte arrives and the final fsync
 * writes the whole file then (2–3 s per GiB on the bench's disk), after the network is done.
 * Flushing every few tens of MiB overlaps the disk with the network; the final fsync stays, and
 * with it the guarantee.
 */

/** Flush every this many bytes written (one flush at a time). */
export const FLUSH_EVERY_BYTES = 32 * 1024 * 1024;

/** Counts bytes written to one file and flushes it (fdatasync) in the background as they add up. */
export class WriteBehind {
  #since = 0;
  #running: Promise<void> | undefined;
  #failed: unknown;

  /** `file` is any open handle of the file (a flush covers every handle's writes). */
  constructor(private readonly file: Deno.FsFile, private readonly every = FLUSH_EVERY_BYTES) {}

  /** Records `n` more bytes written; never throws (a failed flush is thrown by `done`). */
  wrote(n: number): void {
    this.#since += n;
    if (this.#since < this.every || this.#running || this.#failed !== undefined) return;
    this.#since = 0;
    this.#running = this.file.syncData().then(
      () => {
        this.#running = undefined;
      },
      (err) => {
        this.#failed = err;
        this.#running = undefined;
      },
    );
  }

  /** Waits for a flush in flight, then fsyncs the file; throws if that or any flush failed. */
  async done(): Promise<void> {
    await this.#running;
    if (this.#failed !== undefined) throw this.#failed;
    await this.file.sync();
  }

  /** Waits for a flush in flight, ignoring its outcome (before closing after a failure); never throws. */
  async settle(): Promise<void> {
    await this.#running;
  }
}
