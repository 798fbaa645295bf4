/**
 * The backup key scheme, shared by every store. A key is a path relative to the store's root:
 *
 * - current layout: `backups/<9999999999999 − order ms, 13 digits>-<ISO order time, ':' → '-'>-
 *   <machine>-<6 hex>.sqlite3`, in a sub-prefix of its own so that no foreign object under the
 *   store's prefix can crowd a listing;
 * - legacy layout (lifeboat 0.1): the same name without the random part, at the root. Still read.
 *
 * Stores list names in ascending byte order, so the newest backup sorts first. The order time is
 * not the writer's clock: `orderTime` makes every new key sort newer than the store's newest.
 */

import { operationError } from "../errors.ts";

const MAX_MS = 9_999_999_999_999;
const ISO = String.raw`\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z`;
const MACHINE = "[A-Za-z0-9_.-]{1,64}";
const CURRENT = new RegExp(String.raw`^(\d{13})-${ISO}-(${MACHINE})-[0-9a-f]{6}\.sqlite3$`);
const LEGACY = new RegExp(String.raw`^(\d{13})-${ISO}-(${MACHINE})\.sqlite3$`);

/** The sub-prefix (directory) that holds backups in the current layout. */
export const BACKUPS_DIR = "backups";
/** The marker object's name, at the store's root: written with the first backup, never expires. */
export const MARKER_NAME = "lifeboat.json";

/** What a key says about its backup: its order time, the machine that wrote it, its layout. */
export interface ParsedKey {
  /** Milliseconds since the epoch that order the backup (≥ the writer's clock; see orderTime). */
  ms: number;
  machine: string;
  legacy: boolean;
}

/**
 * Returns a new, unique key in the current layout for order time `ms` on `machine` (sanitised,
 * never empty). Two calls in the same millisecond on the same machine still differ.
 */
export function backupKey(ms: number, machine: string): string {
  const order = Math.floor(ms);
  if (!(order >= 0 && order <= MAX_MS)) {
    // Only a store whose newest key claims a date near the year 2286 gets here (see orderTime).
    throw operationError(
      `cannot order a new backup after the store's newest one (order time ${ms} ms is past ` +
        `the key scheme's end, ${new Date(MAX_MS).toISOString()})`,
      "A backup with an absurd date sorts first: move it out of the store's backups/ prefix",
    );
  }
  const inverted = String(MAX_MS - order).padStart(13, "0");
  const readable = new Date(order).toISOString().replaceAll(":", "-");
  const unique = crypto.getRandomValues(new Uint8Array(3));
  const hex = [...unique].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${BACKUPS_DIR}/${inverted}-${readable}-${sanitizeMachine(machine)}-${hex}.sqlite3`;
}

/**
 * Returns what a key (`backups/NAME` or a legacy root `NAME`) says, or undefined if it is not a
 * backup key of either layout (so it can never name a path outside the store).
 */
export function parseKey(key: string): ParsedKey | undefined {
  const slash = key.indexOf("/");
  const legacy = slash < 0;
  if (!legacy && key.slice(0, slash) !== BACKUPS_DIR) return undefined;
  const m = (legacy ? LEGACY : CURRENT).exec(legacy ? key : key.slice(slash + 1));
  if (!m) return undefined;
  return { ms: MAX_MS - Number(m[1]), machine: m[2], legacy };
}

/** Returns `key` if it is a backup key of either layout; throws otherwise (a bug, not input). */
export function checkKey(key: string): string {
  if (!parseKey(key)) throw new Error(`not a backup key: ${JSON.stringify(key)}`);
  return key;
}

/**
 * Returns the order time for a new backup: the local clock, unless the store's newest backup is
 * ordered at or after it (a clock behind, stepped back, or another machine's clock ahead), in
 * which case one millisecond after that newest — so a new backup always sorts first.
 */
export function orderTime(now: number, newestMs?: number): number {
  return newestMs !== undefined && newestMs >= now ? newestMs + 1 : now;
}

/** Returns a machine name safe inside a key: letters, digits, `_ . -`, at most 64 characters. */
export function sanitizeMachine(machine: string): string {
  const clean = machine.replace(/[^A-Za-z0-9_.-]/g, "_").replace(/^\.+/, "_").slice(0, 64);
  return clean || "unknown";
}
