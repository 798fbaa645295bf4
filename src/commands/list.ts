/**
 * `lifeboat list`: each database's backups, newest first, as a table or one JSON document.
 * Read-only: it takes no lock, needs no database file, and never restores or writes anything.
 */
import { dirname } from "node:path";
import { configError } from "../errors.ts";
import { statIfExists } from "../fsutil.ts";
import { openStore } from "../store/open.ts";
import type { DatabaseSpec, S3Options, StoreUrl } from "../store/settings.ts";
import type { BackupInfo, Store } from "../store/store.ts";
import { mapBounded } from "./several.ts";

/** What listing needs: the databases and where their backups live. */
export interface ListConfig {
  databases: DatabaseSpec[];
  store: StoreUrl;
  s3: S3Options;
}

/** `list`'s own flags, on top of `--db` and `--url`. */
export interface ListFlags {
  limit?: string;
  json?: boolean;
  /** S3: HEAD each listed backup for its SHA-256 (a directory store shows it anyway). */
  sha256?: boolean;
}

/** One listed backup, as `--json` prints it. */
export interface ListedBackup {
  /** The database's store name. */
  db: string;
  /** Where its backups live (`s3://bucket/prefix` or `file:///dir`). */
  store: string;
  /** The key under that store (`backups/…sqlite3`). */
  key: string;
  /** Order time from the key, ISO 8601. */
  time: string;
  size?: number;
  machine: string;
  sha256?: string;
}

/** Backups listed per database unless `--limit` says otherwise. */
export const DEFAULT_LIST_LIMIT = 20;
/** The most backups `--limit` may ask for. */
export const MAX_LIST_LIMIT = 10_000;
/** HEAD requests at once per database for `--sha256`. */
const DESCRIBE_CONCURRENCY = 8;

/** Parses `--limit`; throws a config error (exit 2) for anything but a whole number in range. */
export function listLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIST_LIMIT;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > MAX_LIST_LIMIT) {
    throw configError(
      `--limit ${JSON.stringify(raw)} is not valid`,
      `Use a whole number from 1 to ${MAX_LIST_LIMIT}`,
    );
  }
  return n;
}

/**
 * Prints every database's newest backups on stdout (a table, or with `--json` one array) and
 * resolves with exit code 0. The store answers one LIST request per page of up to 1,000 keys;
 * SHA-256 comes from a directory store's metadata files, and from S3 only with `--sha256` (one
 * HEAD per backup). Throws (exit 1) when a store cannot be read, (exit 2) for a bad `--limit`.
 */
export async function listBackups(cfg: ListConfig, flags: ListFlags): Promise<number> {
  const limit = listLimit(flags.limit);
  const rows: ListedBackup[] = [];
  const stores = cfg.databases.map((d) => openStore(d.store, cfg.s3));
  const found = await Promise.all(cfg.databases.map(async (d, i) => {
    const infos = await newestOf(d, cfg, stores[i], limit);
    const withSha = d.store.kind === "file" || flags.sha256;
    // Up to `limit` (10,000) HEAD requests per database: a few at a time, not all at once.
    return await mapBounded(infos, DESCRIBE_CONCURRENCY, (b) => row(d, stores[i], b, withSha));
  }));
  for (const part of found) rows.push(...part);
  const out = flags.json ? JSON.stringify(rows, null, 2) : table(cfg.databases, stores, found);
  await writeOut(out + "\n");
  return 0;
}

/** The newest backups of one database; none when its sub-directory of an existing store is missing. */
async function newestOf(
  d: DatabaseSpec,
  cfg: ListConfig,
  store: Store,
  limit: number,
): Promise<BackupInfo[]> {
  if (d.own && d.store.kind === "file" && cfg.store.kind === "file") {
    const root = await statIfExists(dirname(d.store.dir));
    if (root?.isDirectory && !(await statIfExists(d.store.dir))) return [];
  }
  return await store.newest(limit);
}

async function row(
  d: DatabaseSpec,
  store: Store,
  b: BackupInfo,
  withSha: boolean | undefined,
): Promise<ListedBackup> {
  const sha256 = withSha ? (await store.describe?.(b.key))?.sha256 : undefined;
  return {
    db: d.name,
    store: store.location,
    key: b.key,
    time: b.createdAt.toISOString(),
    ...(b.size !== undefined ? { size: b.size } : {}),
    machine: b.machine,
    ...(sha256 ? { sha256 } : {}),
  };
}

/** One block per database: a heading with its store, then a column-aligned table. */
function table(dbs: DatabaseSpec[], stores: Store[], found: ListedBackup[][]): string {
  const blocks = dbs.map((d, i) => {
    const rows = found[i];
    const where = stores[i].location;
    if (rows.length === 0) return `${d.name} (${d.path}): no backups in ${where}`;
    const cells = [["KEY", "TIME", "SIZE", "MACHINE", "SHA-256"]].concat(
      rows.map((r) => [r.key, r.time, String(r.size ?? "?"), r.machine, r.sha256 ?? "-"]),
    );
    const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
    const lines = cells.map((r) => r.map((v, c) => v.padEnd(widths[c])).join("  ").trimEnd());
    return [`${d.name} (${d.path}): ${rows.length} newest in ${where}`, ...lines].join("\n");
  });
  return blocks.join("\n\n");
}

async function writeOut(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}
