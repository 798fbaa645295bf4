/** Turning a downloaded backup into the live database file, only once it is proven sound. */
import type { BackupMeta, DownloadedBackup } from "../store/store.ts";
import { checkDatabase } from "./snapshot.ts";
import type { RestoreCheck } from "./restore_check.ts";

export type { RestoreCheck } from "./restore_check.ts";

/** The result of checking one download: sound (with its size) or the reason it is not. */
export type Verified =
  | { ok: true; size: number; sha256: string }
  /** `unverifiable`: nothing recorded its SHA-256 (not a lifeboat backup, or one never finished). */
  | { ok: false; problem: string; unverifiable?: boolean };

/**
 * The SQLite check that `check` asks for on a backup with metadata `meta` once its SHA-256
 * matched: none for "auto" when the metadata records that these bytes passed quick_check before
 * upload (the SHA-256 proves they are the same bytes), else the pragma to run. Never throws.
 */
export function sqliteCheckFor(
  meta: Partial<BackupMeta>,
  check: RestoreCheck = "auto",
): "quick_check" | "integrity_check" | undefined {
  if (check === "auto" && meta.checked === "quick_check") return undefined;
  return check === "integrity_check" ? check : "quick_check";
}

/**
 * Checks a backup already read: size and SHA-256 against its metadata, then the SQLite check
 * `check` asks for on the file `tmp` (read only then: see sqliteCheckFor). A bad backup is
 * reported as `{ ok: false }` (worth trying an older one); `tmp` is left for the caller to
 * remove. Throws only if `signal` aborts the check.
 */
export async function verifyDownloaded(
  got: DownloadedBackup,
  tmp: string,
  check: RestoreCheck = "auto",
  signal?: AbortSignal,
): Promise<Verified> {
  const { sha256, size, meta } = got;
  if (!meta.sha256) {
    return { ok: false, problem: "no SHA-256 recorded (metadata or seal)", unverifiable: true };
  }
  if (meta.size !== undefined && meta.size !== size) {
    return { ok: false, problem: `size ${size} bytes, metadata says ${meta.size}` };
  }
  if (meta.sha256 !== sha256) return { ok: false, problem: "SHA-256 mismatch" };
  const pragma = sqliteCheckFor(meta, check);
  if (!pragma) return { ok: true, size, sha256 };
  const verdict = await checkDatabase(tmp, signal, pragma);
  if (verdict !== "ok") return { ok: false, problem: `${pragma}: ${verdict.slice(0, 200)}` };
  return { ok: true, size, sha256 };
}
