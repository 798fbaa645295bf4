/**
 * The store's layout and its key scheme, shared by every store. A key is a path relative to the
 * store's root (the URL's prefix or directory). Places a backup can live in:
 *
 * - `backups/TIER/NAME/FILE` (store format 3, every database since lifeboat 0.3): TIER is
 *   `recent`, `hourly` or `daily` (see `tierAfter`), so that lifecycle rules can thin backups by
 *   prefix alone, on stores that filter rules by nothing else (Tigris, R2);
 * - `kept/NAME.sqlite3`: a copy of NAME's newest verified backup, replaced by each newer one, for
 *   stores whose rules see prefixes only: no rule covers `kept/`, so the newest always survives;
 * - legacy, read forever, never written: `backups/FILE` (0.2, one database at the root),
 *   `NAME/backups/FILE` (0.2, several databases) and a root `FILE` without its random part (0.1).
 *
 * FILE is `<9999999999999 − order ms, 13 digits>-<ISO order time, ':' → '-'>-<machine>-<6 hex>
 * .sqlite3`. Stores list names in ascending byte order, so in each place the newest sorts first;
 * the order time is not the writer's clock: `orderTime` makes every new key sort newer than the
 * database's newest. A backup whose SHA-256 was known only after its upload began has a zero-byte
 * seal beside it: `FILE.sha256-<64 hex>`.
 */

import { operationError } from "../errors.ts";

const MAX_MS = 9_999_999_999_999;
/** Keys ordered within a year of the scheme's end (2286) cannot be from a clock: see isPastEnd. */
const END_MARGIN_MS = 366 * 24 * 3_600_000;
const ISO = String.raw`\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}Z`;
const MACHINE = "[A-Za-z0-9_.-]{1,64}";
const FILE = new RegExp(String.raw`^(\d{13})-${ISO}-(${MACHINE})-[0-9a-f]{6}\.sqlite3$`);
const LEGACY_FILE = new RegExp(String.raw`^(\d{13})-${ISO}-(${MACHINE})\.sqlite3$`);
const SEAL = /^(.+\.sqlite3)\.sha256-([0-9a-f]{64})$/;
/** A database's store name: letters, digits, `._-`, not starting with a dot. */
const NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** The sub-prefix (directory) of every backup written since lifeboat 0.2. */
export const BACKUPS_DIR = "backups";
/** The sub-prefix of the kept copies (one object per database, never under a lifecycle rule). */
export const KEPT_DIR = "kept";
/** The store's manifest (the marker of lifeboat 0.2 grew into it), at the store's root. */
export const MARKER_NAME = "lifeboat.json";

/** The tiers a backup is filed under, shortest-lived first (see tierAfter). */
export const TIERS = ["recent", "hourly", "daily"] as const;
/** Which lifecycle rule a backup falls under: every backup, first of its hour, first of its day. */
export type Tier = typeof TIERS[number];

/** One place backups live in, with the layout that wrote it. */
export type Place =
  | { layout: "v3"; name: string; tier: Tier }
  | { layout: "named-v2"; name: string }
  | { layout: "root-v2" }
  | { layout: "root-v1" };

/** A place's layout name, as the manifest records it. */
export type Layout = Place["layout"] | "kept";
/** Every layout, oldest last. */
export const LAYOUTS: readonly Layout[] = ["v3", "kept", "named-v2", "root-v2", "root-v1"];

/** What a backup key says: its order time, the machine that wrote it, where it lives. */
export interface ParsedKey {
  /** Milliseconds since the epoch that order the backup (≥ the writer's clock; see orderTime). */
  ms: number;
  machine: string;
  place: Place;
}

/** True when `name` can name a database in the store (1–64 of `A-Za-z0-9._-`, no leading dot). */
export function isStoreName(name: string): boolean {
  return NAME.test(name);
}

/** The directory (with its trailing `/`, or "" for the root) that a place's keys are in. */
export function placeDir(p: Place): string {
  switch (p.layout) {
    case "v3":
      return `${BACKUPS_DIR}/${p.tier}/${p.name}/`;
    case "named-v2":
      return `${p.name}/${BACKUPS_DIR}/`;
    case "root-v2":
      return `${BACKUPS_DIR}/`;
    case "root-v1":
      return "";
  }
}

/** Every place database `name` may have backups in, the current layout first. */
export function placesOf(name: string, withRoot: boolean): Place[] {
  return [
    ...TIERS.map((tier): Place => ({ layout: "v3", name, tier })),
    { layout: "named-v2", name },
    ...(withRoot ? [{ layout: "root-v2" } as Place, { layout: "root-v1" } as Place] : []),
  ];
}

/** The kept copy of database `name`'s newest backup. */
export function keptKey(name: string): string {
  return `${KEPT_DIR}/${checkName(name)}.sqlite3`;
}

/** The marker of a database of lifeboat 0.2 run among several (`NAME/lifeboat.json`). */
export function legacyMarkerKey(name: string): string {
  return `${checkName(name)}/${MARKER_NAME}`;
}

/**
 * Returns a new, unique key of database `name` in tier `tier` for order time `ms` on `machine`
 * (sanitised, never empty). Two calls in the same millisecond on the same machine still differ.
 * Throws (exit 1) past the key scheme's end, which only a key dated 2286 can make it reach.
 */
export function backupKey(name: string, tier: Tier, ms: number, machine: string): string {
  const order = Math.floor(ms);
  if (!(order >= 0 && order <= MAX_MS)) {
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
  const file = `${inverted}-${readable}-${sanitizeMachine(machine)}-${hex}.sqlite3`;
  return placeDir({ layout: "v3", name: checkName(name), tier }) + file;
}

/**
 * Returns what a backup key says, or undefined when it is not a backup key of any layout (so it
 * can never name a path outside the store, nor a seal, marker or kept copy).
 */
export function parseKey(key: string): ParsedKey | undefined {
  const parts = key.split("/");
  const file = parts.at(-1)!;
  let place: Place | undefined;
  if (parts.length === 4 && parts[0] === BACKUPS_DIR && isTier(parts[1]) && NAME.test(parts[2])) {
    place = { layout: "v3", name: parts[2], tier: parts[1] };
  } else if (parts.length === 3 && parts[1] === BACKUPS_DIR && NAME.test(parts[0])) {
    place = { layout: "named-v2", name: parts[0] };
  } else if (parts.length === 2 && parts[0] === BACKUPS_DIR) {
    place = { layout: "root-v2" };
  } else if (parts.length === 1) {
    place = { layout: "root-v1" };
  }
  const m = place && (place.layout === "root-v1" ? LEGACY_FILE : FILE).exec(file);
  if (!place || !m) return undefined;
  return { ms: MAX_MS - Number(m[1]), machine: m[2], place };
}

/**
 * Returns the backup key and SHA-256 a seal key records (`KEY.sha256-<hex>`), or undefined when
 * `key` is not the seal of a backup key.
 */
export function parseSeal(key: string): { key: string; sha256: string } | undefined {
  const m = SEAL.exec(key);
  return m && parseKey(m[1]) ? { key: m[1], sha256: m[2] } : undefined;
}

/** The seal that records `sha256` for backup `key` (see the header). */
export function sealKey(key: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`not a SHA-256: ${sha256}`);
  return `${checkKey(key)}.sha256-${sha256}`;
}

/** True when `key` is a kept copy's (`kept/NAME.sqlite3`). */
export function isKeptKey(key: string): boolean {
  return key.startsWith(`${KEPT_DIR}/`) && key.endsWith(".sqlite3") &&
    key.split("/").length === 2 && NAME.test(key.slice(KEPT_DIR.length + 1, -8));
}

/** Returns `key` if it is a backup key or a kept copy's key; throws otherwise (a bug, not input). */
export function checkKey(key: string): string {
  if (!isKeptKey(key) && !parseKey(key)) {
    throw new Error(`not a backup key: ${JSON.stringify(key)}`);
  }
  return key;
}

/**
 * True when a key is ordered within a year of the scheme's end (the year 2286): no clock says
 * that, and no later backup could sort before it, so such a key is never taken as the newest.
 */
export function isPastEnd(ms: number): boolean {
  return ms > MAX_MS - END_MARGIN_MS;
}

/**
 * Returns the order time for a new backup: the local clock, unless the database's newest backup
 * is ordered at or after it (a clock behind, stepped back, or another machine's clock ahead), in
 * which case one millisecond after that newest — so a new backup always sorts first.
 */
export function orderTime(now: number, newestMs?: number): number {
  return newestMs !== undefined && newestMs >= now ? newestMs + 1 : now;
}

/**
 * The tier a new backup ordered at `ms` is filed under, after the database's newest backup
 * ordered at `previousMs`: `daily` for the first of its UTC day (or the first ever), `hourly` for
 * the first of its UTC hour, else `recent`. Each tier has its own lifecycle rule.
 */
export function tierAfter(ms: number, previousMs?: number): Tier {
  const HOUR = 3_600_000, DAY = 24 * HOUR;
  if (previousMs === undefined || Math.floor(previousMs / DAY) < Math.floor(ms / DAY)) {
    return "daily";
  }
  return Math.floor(previousMs / HOUR) < Math.floor(ms / HOUR) ? "hourly" : "recent";
}

/** Returns a machine name safe inside a key: letters, digits, `_ . -`, at most 64 characters. */
export function sanitizeMachine(machine: string): string {
  const clean = machine.replace(/[^A-Za-z0-9_.-]/g, "_").replace(/^\.+/, "_").slice(0, 64);
  return clean || "unknown";
}

function isTier(s: string): s is Tier {
  return (TIERS as readonly string[]).includes(s);
}

function checkName(name: string): string {
  if (!NAME.test(name)) throw new Error(`not a store name: ${JSON.stringify(name)}`);
  return name;
}
