/** Small file-system helpers with the durability guarantees backups need. */
import { createHash } from "node:crypto";

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

/**
 * Writes a stream to a new file (mode 0600, never replacing one) while hashing it; fsyncs before
 * returning. On failure the partial file is removed and the error rethrown.
 */
export async function writeStreamHashed(
  body: ReadableStream<Uint8Array>,
  path: string,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  try {
    using f = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    for await (const chunk of body) {
      hash.update(chunk);
      size += chunk.length;
      let off = 0;
      while (off < chunk.length) off += await f.write(chunk.subarray(off));
    }
    await f.sync();
  } catch (e) {
    await body.cancel().catch(() => {});
    await removeIfExists(path).catch(() => {});
    throw e;
  }
  return { sha256: hash.digest("hex"), size };
}

/** True when `err` is the operating system's "no space left on device" (ENOSPC). */
export function isDiskFull(err: unknown): boolean {
  return err instanceof Error && /os error 28|No space left on device|ENOSPC/i.test(err.message);
}
