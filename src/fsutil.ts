/** Small file-system helpers with the durability guarantees backups need. */
import { operationError } from "./errors.ts";

// node:crypto and node:fs/promises are loaded on first use: `watch`'s long-lived process uses this
// module's file helpers only, and Deno's node layer costs megabytes once evaluated (issue #22).

/** A fresh SHA-256 hash (node:crypto, loaded on first call). */
async function sha256() {
  return (await import("node:crypto")).createHash("sha256");
}

/** Flushes a file's data and metadata to disk; throws if the file cannot be opened. */
export async function fsyncFile(path: string): Promise<void> {
  using f = await Deno.open(path, { read: true });
  await f.sync();
}

/** Flushes a directory entry (after a rename or link) to disk; a no-op where unsupported. */
export async function fsyncDir(dir: string): Promise<void> {
  try {
    using d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  }
}

/** Removes a file if it exists; never throws for a missing file. */
export async function removeIfExists(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Returns the file's stat, or undefined when it does not exist (other errors are thrown). */
export async function statIfExists(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Returns a random suffix for temporary names (not a secret, just unique). */
export function randomSuffix(): string {
  return crypto.randomUUID().slice(0, 8);
}

/** Wraps every read of `chunksOf`, e.g. to fail a read that brings nothing for too long. */
export type ReadGuard = <T>(read: Promise<T>) => Promise<T>;

/**
 * Yields `body`'s bytes in order. A byte stream is read into one reused 1 MiB buffer, so memory
 * stays flat at any size (a default reader gets a new chunk per read, and they pile up faster
 * than the GC frees them): a chunk is valid only until the next one is asked for. `guard` wraps
 * every read. Stopping early, or an error, cancels `body`.
 */
export async function* chunksOf(
  body: ReadableStream<Uint8Array>,
  guard: ReadGuard = (read) => read,
): AsyncGenerator<Uint8Array> {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch { /* not a byte stream: take its chunks as they come */ }
  const plain = byob ? undefined : body.getReader();
  let buf = new Uint8Array(1 << 20);
  let ended = false;
  try {
    for (;;) {
      const { value, done } = await guard<ReadableStreamReadResult<Uint8Array>>(
        byob ? byob.read(buf) : plain!.read(),
      );
      if (done || !value) {
        ended = true;
        return;
      }
      yield value;
      if (byob) buf = new Uint8Array(value.buffer as ArrayBuffer);
    }
  } finally {
    if (!ended) await (byob ?? plain)!.cancel().catch(() => {});
  }
}

/**
 * Hashes a stream (SHA-256) without keeping its bytes: memory stays flat at any size (chunksOf).
 * `guard` wraps every read. On failure the stream is cancelled and the error rethrown.
 */
export async function hashStream(
  body: ReadableStream<Uint8Array>,
  guard?: ReadGuard,
): Promise<{ sha256: string; size: number }> {
  const hash = await sha256();
  let size = 0;
  for await (const chunk of chunksOf(body, guard)) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest("hex"), size };
}

/**
 * Writes a stream to a new file (mode 0600, never replacing one) while hashing it; fsyncs before
 * returning. `guard` wraps every read. On failure the partial file is removed, the stream
 * cancelled and the error rethrown.
 */
export async function writeStreamHashed(
  body: ReadableStream<Uint8Array>,
  path: string,
  guard?: ReadGuard,
): Promise<{ sha256: string; size: number }> {
  const hash = await sha256();
  let size = 0;
  try {
    using f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    for await (const chunk of chunksOf(body, guard)) {
      hash.update(chunk);
      size += chunk.length;
      for (let off = 0; off < chunk.length;) off += await f.write(chunk.subarray(off));
    }
    await f.sync();
  } catch (e) {
    // Once read, chunksOf cancelled it; a stream never read (the file could not be made) is here.
    if (!body.locked) await body.cancel(e).catch(() => {});
    await removeIfExists(path).catch(() => {});
    throw e;
  }
  return { sha256: hash.digest("hex"), size };
}

/** True when `err` is the operating system's "no space left on device" (ENOSPC). */
export function isDiskFull(err: unknown): boolean {
  return err instanceof Error &&
    /os error 28|No space left on device|ENOSPC|database or disk is full/i.test(err.message);
}

/**
 * Hashes a file (SHA-256) in 1 MiB reads into one buffer. The thread is free between reads
 * (≈ 1 ms each); stops at the next read once `signal` aborts. No fsync: it only reads.
 */
export async function hashFile(
  path: string,
  signal?: AbortSignal,
): Promise<{ sha256: string; size: number }> {
  const hash = await sha256();
  let size = 0;
  using f = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1 << 20);
  for (;;) {
    signal?.throwIfAborted();
    const n = await f.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
    size += n;
  }
  return { sha256: hash.digest("hex"), size };
}

const MiB = 1024 * 1024;
/** Room left for the app's own writes after a copy: 64 MiB, or a tenth of a smaller disk. */
function marginFor(capacity: number): number {
  return Math.min(64 * MiB, Math.floor(capacity / 10));
}

/**
 * Throws an operation error (exit 1) that says "disk" when writing `bytes` more into `dir` would
 * leave less than the margin free there; call it before writing anything. `what` names the
 * copy. Where free space cannot be read it returns and the write goes ahead.
 */
export async function ensureFreeSpace(dir: string, bytes: number, what: string): Promise<void> {
  let fs;
  try {
    fs = await (await import("node:fs/promises")).statfs(dir);
  } catch {
    return;
  }
  const free = fs.bavail * fs.bsize;
  const margin = marginFor(fs.blocks * fs.bsize);
  if (free - bytes >= margin) return;
  const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;
  throw operationError(
    `not enough disk space for ${what}: it needs about ${mib(bytes)} and ${dir} has ` +
      `${mib(free)} free; lifeboat leaves ${mib(margin)} of the disk to the app's own writes`,
    "Free disk space or give the machine a bigger disk; nothing was written",
  );
}
