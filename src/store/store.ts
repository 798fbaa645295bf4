/** The one seam to the outside world: where backups are written, listed and read. */

/** What every backup records about itself, stored beside its bytes. */
export interface BackupMeta {
  /** Hex SHA-256 of the whole backup file. */
  sha256: string;
  /** Size in bytes. */
  size: number;
  pageSize: number;
  pageCount: number;
  /** ISO 8601 time the snapshot was taken. */
  createdAt: string;
  /** lifeboat version that wrote it. */
  version: string;
  /** The machine it came from (FLY_MACHINE_ID or hostname). */
  machine: string;
}

/** A backup found by listing: its key, and what the listing told about it. */
export interface BackupInfo {
  key: string;
  /** When it was taken, from the key. */
  createdAt: Date;
  /** Size in bytes, when the listing gives it. */
  size?: number;
}

/** A backup opened for reading. */
export interface OpenedBackup {
  body: ReadableStream<Uint8Array>;
  /** Its metadata; a field the store could not read is left out rather than guessed. */
  meta: Partial<BackupMeta>;
  /** Fail the read when the body delivers nothing for this long (network stores). */
  idleMs?: number;
}

/** A place backups live: an S3 prefix or a local directory. Keys come from `keys.ts`. */
export interface Store {
  /** Human-readable location for log lines (never contains secrets). */
  readonly location: string;
  /** Writes a new backup object; never overwrites; on failure or abort leaves nothing visible. */
  put(key: string, file: string, meta: BackupMeta, signal?: AbortSignal): Promise<void>;
  /** Newest backups first, at most `limit`; an empty array means the store confirmed it has none. */
  newest(limit: number): Promise<BackupInfo[]>;
  /** Streams one backup's bytes with its metadata; throws if it cannot be read. */
  open(key: string): Promise<OpenedBackup>;
}

/** Metadata as flat string pairs (S3 user metadata, sidecar files). */
export function metaToRecord(meta: BackupMeta): Record<string, string> {
  return {
    sha256: meta.sha256,
    size: String(meta.size),
    "page-size": String(meta.pageSize),
    "page-count": String(meta.pageCount),
    "created-at": meta.createdAt,
    version: meta.version,
    machine: meta.machine,
  };
}

/** Reads metadata back from string pairs; fields that are missing or malformed are left out. */
export function metaFromRecord(rec: Record<string, string | undefined>): Partial<BackupMeta> {
  const out: Partial<BackupMeta> = {};
  const num = (v: string | undefined) => v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
  if (rec.sha256 && /^[0-9a-f]{64}$/.test(rec.sha256)) out.sha256 = rec.sha256;
  const size = num(rec.size), pageSize = num(rec["page-size"]), pageCount = num(rec["page-count"]);
  if (size !== undefined) out.size = size;
  if (pageSize !== undefined) out.pageSize = pageSize;
  if (pageCount !== undefined) out.pageCount = pageCount;
  if (rec["created-at"]) out.createdAt = rec["created-at"];
  if (rec.version) out.version = rec.version;
  if (rec.machine) out.machine = rec.machine;
  return out;
}
