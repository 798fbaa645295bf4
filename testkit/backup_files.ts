/** Files and metadata for Store tests: random bytes on disk and a plausible BackupMeta. */
import { readDbHistory } from "../src/store/history.ts";
import { backupKey } from "../src/store/keys.ts";
import type { BackupInfo, BackupMeta, Store } from "../src/store/store.ts";

/** Metadata for `bytes` as a backup of machine m1 (the hash is `sha256`, not computed). */
export function metaFor(bytes: Uint8Array, sha256 = "0".repeat(64)): BackupMeta {
  return {
    sha256,
    size: bytes.length,
    pageSize: 4096,
    pageCount: Math.ceil(bytes.length / 4096),
    createdAt: new Date().toISOString(),
    version: "test",
    machine: "m1",
  };
}

/** Writes `size` random bytes to a new file in `dir`; returns its path and the bytes. */
export async function randomFile(
  dir: string,
  size: number,
): Promise<{ path: string; bytes: Uint8Array }> {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  const path = `${dir}/src-${crypto.randomUUID()}.bin`;
  await Deno.writeFile(path, bytes);
  return { path, bytes };
}

/** The place store tests write to: database "db"'s recent tier. */
export const TEST_DIR = "backups/recent/db/";

/** A new key of database "db" in its recent tier, ordered at `ms`, from `machine`. */
export function testKey(ms: number, machine = "m1"): string {
  return backupKey("db", "recent", ms, machine);
}

/** Database `name`'s backups in `store`, newest first, across every place (store/history.ts). */
export async function backupsOf(store: Store, name: string, limit = 20): Promise<BackupInfo[]> {
  return (await readDbHistory(store, name, limit)).own;
}

/** `inner` with some of its methods replaced (a fake store that is slow, fails or lies). */
export function storeWith(inner: Store, over: Partial<Store>): Store {
  return Object.assign(Object.create(inner), over);
}
