/**
 * The backup key scheme, shared by every store:
 * `<9999999999999 − epoch ms, 13 digits>-<ISO time with ':' → '-'>-<machine>.sqlite3`.
 * Stores list names in ascending byte order, so the newest backup always sorts first.
 */

const MAX_MS = 9_999_999_999_999;
const KEY =
  /^(\d{13})-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z)-([A-Za-z0-9_.-]{1,64})\.sqlite3$/;

/** Returns the key for a backup taken at `ms` on `machine` (machine is sanitised, never empty). */
export function backupKey(ms: number, machine: string): string {
  const inverted = String(MAX_MS - Math.floor(ms)).padStart(13, "0");
  const readable = new Date(ms).toISOString().replaceAll(":", "-");
  return `${inverted}-${readable}-${sanitizeMachine(machine)}.sqlite3`;
}

/** Returns when a key's backup was taken and where, or undefined if the name is not a backup key. */
export function parseKey(name: string): { ms: number; machine: string } | undefined {
  const m = KEY.exec(name);
  if (!m) return undefined;
  return { ms: MAX_MS - Number(m[1]), machine: m[3] };
}

/** Returns a machine name safe inside a key: letters, digits, `_ . -`, at most 64 characters. */
export function sanitizeMachine(machine: string): string {
  const clean = machine.replace(/[^A-Za-z0-9_.-]/g, "_").replace(/^\.+/, "_").slice(0, 64);
  return clean || "unknown";
}
