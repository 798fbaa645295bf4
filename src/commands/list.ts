/**
 * `lifeboat list`: each database's backups, newest first, as a table or one JSON document, from
 * every place the store keeps them in (the backups restore would consider, attributed by the same
 * rules), with the ones a restore passed over marked. Read-only: it takes no lock, needs no
 * database file, and never restores or writes anything.
 */
import { listLimit } from "./list_limit.ts";
import { type DbView, readStoreState, viewOf } from "../store/history.ts";
import { isKeptKey } from "../store/keys.ts";
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
  /** The database's store name; `(root)` for legacy root backups claimed by no database. */
  db: string;
  /** Where the store is (`s3://bucket/prefix` or `file:///dir`). */
  store: string;
  /** The key under the store (`backups/TIER/NAME/…sqlite3`, `kept/NAME.sqlite3`, …). */
  key: string;
  /** Order time from the key, ISO 8601. */
  time: string;
  size?: number;
  machine: string;
  /** The layout it is in: v3, named-v2, root-v2, root-v1; `kept` for the kept copy. */
  layout: string;
  sha256?: string;
  /** Why a restore passed over it (it failed verification then), when one did. */
  bypassed?: string;
}

/** HEAD requests at once for `--sha256`. */
const DESCRIBE_CONCURRENCY = 8;
/** The pseudo-database of legacy root backups that no database has claimed. */
const UNCLAIMED = "(root)";

/**
 * Prints every database's newest backups on stdout (a table, or with `--json` one array) and
 * resolves with exit code 0; legacy root backups no database has claimed get a block of their
 * own. The store answers a few LIST requests per place, however many backups it holds; SHA-256
 * comes from a directory store's metadata files and from seals, and from S3 only with
 * `--sha256` (one HEAD per backup). Throws (exit 1) when the store cannot be read, (exit 2) for
 * a bad `--limit`.
 */
export async function listBackups(cfg: ListConfig, flags: ListFlags): Promise<number> {
  const limit = listLimit(flags.limit);
  const store = openStore(cfg.store, cfg.s3);
  const state = await readStoreState(store, cfg.databases.map((d) => d.name), limit);
  const withSha = cfg.store.kind === "file" || !!flags.sha256;
  const views = cfg.databases.map((d) => viewOf(d, cfg.databases, state));
  const bypassedOf = (name: string) =>
    new Map(
      (state.manifest?.manifest.databases.find((d) => d.name === name)?.bypassed ?? [])
        .map((b) => [b.key, b.problem]),
    );
  const blocks: { title: string; rows: ListedBackup[] }[] = [];
  for (const [i, d] of cfg.databases.entries()) {
    const bypassed = bypassedOf(d.name);
    const rows = await rowsOf(d.name, views[i].candidates.slice(0, limit), store, withSha);
    for (const r of rows) if (bypassed.has(r.key)) r.bypassed = bypassed.get(r.key);
    blocks.push({ title: `${d.name} (${d.path})`, rows });
  }
  const unclaimed = unclaimedOf(views);
  if (unclaimed.length > 0) {
    blocks.push({
      title: "legacy root, claimed by no database (restore one with --from KEY to claim it)",
      rows: await rowsOf(UNCLAIMED, unclaimed.slice(0, limit), store, withSha),
    });
  }
  const out = flags.json
    ? JSON.stringify(blocks.flatMap((b) => b.rows), null, 2)
    : table(blocks, store.location);
  await writeOut(out + "\n");
  return 0;
}

/** The root backups no database of the run takes (the same for every view). */
function unclaimedOf(views: DbView[]): BackupInfo[] {
  return views.find((v) => v.unclaimed.length > 0)?.unclaimed ?? [];
}

/** The rows of one block, with SHA-256 read (HEAD, a few at a time) when asked for. */
function rowsOf(db: string, infos: BackupInfo[], store: Store, withSha: boolean) {
  return mapBounded(infos, DESCRIBE_CONCURRENCY, async (b): Promise<ListedBackup> => {
    const sha256 = b.sha256 ?? (withSha ? (await store.describe(b.key))?.meta.sha256 : undefined);
    return {
      db,
      store: store.location,
      key: b.key,
      time: b.createdAt.toISOString(),
      ...(b.size !== undefined ? { size: b.size } : {}),
      machine: b.machine,
      layout: isKeptKey(b.key) ? "kept" : b.place.layout,
      ...(sha256 ? { sha256 } : {}),
    };
  });
}

/** One block per database: a heading, then a column-aligned table. */
function table(blocks: { title: string; rows: ListedBackup[] }[], where: string): string {
  return blocks.map(({ title, rows }) => {
    if (rows.length === 0) return `${title}: no backups in ${where}`;
    const cells = [["KEY", "TIME", "SIZE", "MACHINE", "SHA-256", "NOTE"]].concat(
      rows.map((r) => [
        r.key,
        r.time,
        String(r.size ?? "?"),
        r.machine,
        r.sha256 ?? "-",
        r.bypassed ? `passed over by a restore: ${r.bypassed}` : "",
      ]),
    );
    const widths = cells[0].map((_, c) => Math.max(...cells.map((r) => r[c].length)));
    const lines = cells.map((r) => r.map((v, c) => v.padEnd(widths[c])).join("  ").trimEnd());
    return [`${title}: ${rows.length} newest in ${where}`, ...lines].join("\n");
  }).join("\n\n");
}

async function writeOut(text: string): Promise<void> {
  const bytes = new TextEncoder().encode(text);
  for (let off = 0; off < bytes.length;) off += await Deno.stdout.write(bytes.subarray(off));
}
