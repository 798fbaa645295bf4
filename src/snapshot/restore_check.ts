/** LIFEBOAT_RESTORE_CHECK's values (its own module: settings read it without the SQLite code). */
/**
 * The SQLite check a restore runs after the SHA-256 matched: "auto" runs `quick_check` unless the
 * backup's metadata says these exact bytes passed it before upload; the others always run
 * that pragma (`integrity_check` is the slower, complete one).
 */
export type RestoreCheck = "auto" | "quick_check" | "integrity_check";
/** Every RestoreCheck, for LIFEBOAT_RESTORE_CHECK. */
export const RESTORE_CHECKS: readonly RestoreCheck[] = ["auto", "quick_check", "integrity_check"];
