/**
 * Reading one backup back from the store and verifying it as restore does (size and SHA-256 end
 * to end, then the SQLite check): restore installs what it read; a restore drill (`drill.ts`)
 * only proves it sound, so it reads one stream and writes a file only when a check needs one.
 */
import { dirname } from "node:path";
import { ensureFreeSpace, hashStream, type ReadGuard, writeStreamHashed } from "../fsutil.ts";
import {
  type RestoreCheck,
  sqliteCheckFor,
  type Verified,
  verifyDownloaded,
} from "../snapshot/install.ts";
import { downloadBackup } from "../store/open.ts";
import type { BackupMeta, Store } from "../store/store.ts";
import { removeTemp } from "../tempfiles.ts";

/** How `readVerified` reads a backup. */
export interface ReadOptions {
  /**
   * "install" (restore): always into `tmp`, by the store's fastest download (S3: a few ranges at
   * once on a slow link). "drill": one stream, nothing in parallel; into `tmp` (after the
   * snapshot's free-space guard) only when a SQLite check must run, else hashed and dropped.
   */
  mode: "install" | "drill";
  /** The SQLite check once the SHA-256 matched (LIFEBOAT_RESTORE_CHECK; default "auto"). */
  check?: RestoreCheck;
  /** "drill": stops the read and the check; the error thrown is then the signal's reason. */
  signal?: AbortSignal;
  /**
   * The SHA-256 a seal recorded (a streamed backup's, written once it passed quick_check):
   * verified against when the metadata records none.
   */
  sealed?: string;
}

/** Errors that came from the store (opening or reading a backup in "drill" mode). */
const storeErrors = new WeakSet<object>();

/**
 * True when `err` was thrown by the store while `readVerified` read in "drill" mode (as opposed
 * to this machine: disk space, the temporary file, the check): a drill that fails so could not
 * reach the store, which says nothing about the backup itself. Never throws.
 */
export function fromStore(err: unknown): boolean {
  return typeof err === "object" && err !== null && storeErrors.has(err);
}

/** Marks `err` as the store's and rethrows it. */
function storeError(err: unknown): never {
  if (typeof err === "object" && err !== null) storeErrors.add(err);
  throw err;
}

/**
 * Reads backup `key` from `store` and verifies it as restore does: size and SHA-256 against its
 * metadata, then the SQLite check `o.check` asks for. A backup that fails verification is
 * `{ ok: false }`; a read that fails throws (retryable unless the error says otherwise). In
 * "install" mode the verified file is left at `tmp`; in every mode `tmp` (removed first if
 * there) is the caller's to remove.
 */
export async function readVerified(
  store: Store,
  key: string,
  tmp: string,
  o: ReadOptions,
): Promise<Verified> {
  await removeTemp(tmp);
  if (o.mode === "install") {
    const got = await downloadBackup(store, key, tmp);
    return await verifyDownloaded({ ...got, meta: withSeal(got.meta, o.sealed) }, tmp, o.check);
  }
  o.signal?.throwIfAborted();
  const raw = await store.open(key).catch(storeError);
  const opened = { ...raw, meta: withSeal(raw.meta, o.sealed) };
  const guard = storeReads(o.signal);
  const pragma = sqliteCheckFor(opened.meta, o.check);
  let got: { sha256: string; size: number };
  if (!pragma) got = await hashStream(opened.body, guard);
  else {
    try {
      await ensureFreeSpace(
        dirname(tmp),
        opened.meta.size ?? 0,
        `a copy of ${key} for its ${pragma}`,
      );
    } catch (err) {
      await opened.body.cancel(err).catch(() => {});
      throw err;
    }
    got = await writeStreamHashed(opened.body, tmp, guard);
  }
  return await verifyDownloaded({ meta: opened.meta, ...got }, tmp, o.check, o.signal);
}

/** `meta`, with a seal's SHA-256 when it records none (a sealed backup passed quick_check). */
function withSeal(meta: Partial<BackupMeta>, sealed?: string): Partial<BackupMeta> {
  return meta.sha256 || !sealed ? meta : { ...meta, sha256: sealed, checked: "quick_check" };
}

/** A read guard that marks read errors as the store's and ends a read once `signal` aborts. */
function storeReads(signal?: AbortSignal): ReadGuard {
  return <T>(read: Promise<T>) => {
    const marked = read.catch(storeError);
    if (!signal) return marked;
    return new Promise<T>((resolve, reject) => {
      const stop = () => reject(signal.reason);
      if (signal.aborted) return stop();
      signal.addEventListener("abort", stop, { once: true });
      marked.then(resolve, reject).finally(() => signal.removeEventListener("abort", stop));
    });
  };
}
