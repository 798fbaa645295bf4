/** The one seam to the outside world: where backups are written, listed and read. */
import { TransientError } from "../errors.ts";

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
  /**
   * The check these exact bytes passed before the backup became visible ("quick_check"); a
   * restore whose SHA-256 matches need not run it again. Absent on backups of lifeboat < 0.2.
   */
  checked?: "quick_check";
}

/** A backup found by listing: its key, and what the listing told about it. */
export interface BackupInfo {
  key: string;
  /** Its order time, from the key (not necessarily when it was taken: see keys.ts). */
  createdAt: Date;
  /** The machine that wrote it, from the key. */
  machine: string;
  /** Size in bytes, when the listing gives it. */
  size?: number;
}

/** A backup opened for reading. */
export interface OpenedBackup {
  body: ReadableStream<Uint8Array>;
  /** Its metadata; a field the store could not read is left out rather than guessed. */
  meta: Partial<BackupMeta>;
}

/** A backup written to a file: its metadata, and the SHA-256 and length of the bytes that landed. */
export interface DownloadedBackup {
  meta: Partial<BackupMeta>;
  sha256: string;
  size: number;
}

/**
 * The marker a store holds from its first backup on: proof that "no backup" is a loss, not a
 * fresh start. It is never superseded, so no lifecycle rule expires it.
 */
export interface StoreMarker {
  /** Store format; 2 is the `backups/` layout. */
  format: number;
  /** When the first backup was stored (the writer's clock). */
  createdAt: string;
  /** The machine that wrote the first backup. */
  machine: string;
  /** lifeboat version that wrote the marker. */
  version: string;
}

/** What a `put` may be stopped by or must wait for. */
export interface PutOptions {
  /** Aborts the upload: `put` throws and nothing is stored. */
  signal?: AbortSignal;
  /**
   * Must resolve before the backup becomes visible (the bytes may be sent meanwhile); when it
   * rejects, its error is thrown and nothing is stored.
   */
  ready?: Promise<void>;
}

/** A place backups live: an S3 prefix or a local directory. Keys come from `keys.ts`. */
export interface Store {
  /** Human-readable location for log lines (never contains secrets). */
  readonly location: string;
  /**
   * Writes a new backup object and resolves only once the store has proved it holds it (an ETag,
   * then the size and SHA-256 read back); never overwrites; on failure or abort it throws and
   * leaves nothing that a restore would accept (see PutOptions for `signal` and `ready`).
   */
  put(key: string, file: string, meta: BackupMeta, opts?: PutOptions): Promise<void>;
  /**
   * Newest backups first, at most `limit`. An empty array means a well-formed answer said there
   * are none; an answer that is not a listing of this store throws.
   */
  newest(limit: number): Promise<BackupInfo[]>;
  /** Streams one backup's bytes with its metadata; throws if it cannot be read. */
  open(key: string): Promise<OpenedBackup>;
  /**
   * Writes one backup into the new file `path` (mode 0600, fsynced) and returns its metadata
   * with the SHA-256 and length of what landed; a backend that can do better than `open` (S3:
   * parallel ranges) has it. Throws, removing `path`, when the transfer fails.
   */
  download?(key: string, path: string): Promise<DownloadedBackup>;
  /**
   * Returns one backup's stored metadata without its bytes (S3: one HeadObject; a directory: its
   * `.json` file); a field the store could not read is left out. Throws if it cannot be read.
   */
  describe?(key: string): Promise<Partial<BackupMeta>>;
  /** Returns the marker, or undefined when the store confirmed there is none; throws otherwise. */
  marker(): Promise<StoreMarker | undefined>;
  /** Writes the marker unless one is there; throws if it cannot be written. */
  putMarker(marker: StoreMarker): Promise<void>;
  /**
   * Marks `key`, once a newer backup is stored, as one the retention rule may expire (S3: an
   * object tag the bucket's lifecycle rule filters on; a directory has no such rule). Throws on
   * failure; the backup then simply stays.
   */
  supersede(key: string): Promise<void>;
}

/** The object tag that marks a backup as superseded: the only objects lifecycle rules expire. */
export const SUPERSEDED_TAG = { key: "lifeboat-superseded", value: "true" } as const;

/** Serialises a marker (JSON, one line). */
export function markerToJson(m: StoreMarker): string {
  return JSON.stringify(m) + "\n";
}

/** Parses a marker; throws (retryable) when the text is not a lifeboat marker (a 200 with the
 * wrong body). */
export function markerFromJson(text: string, where: string): StoreMarker {
  let v: Partial<StoreMarker> | undefined;
  try {
    v = JSON.parse(text);
  } catch { /* handled below */ }
  if (
    !v || typeof v !== "object" || typeof v.format !== "number" ||
    typeof v.createdAt !== "string" || typeof v.machine !== "string"
  ) {
    throw new TransientError(
      `${where} is not a lifeboat marker (got ${JSON.stringify(text.slice(0, 60))})`,
      "lifeboat reads it again; if it persists, check that the URL and endpoint name the store " +
        "lifeboat writes to, and remove a foreign lifeboat.json there",
    );
  }
  return {
    format: v.format,
    createdAt: v.createdAt,
    machine: v.machine,
    version: String(v.version ?? ""),
  };
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
    ...(meta.checked ? { checked: meta.checked } : {}),
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
  if (rec.checked === "quick_check") out.checked = rec.checked;
  return out;
}
