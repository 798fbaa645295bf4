/** The one seam to the outside world: where backups are written, listed and read. */
import { TransientError } from "../errors.ts";
import type { Phases } from "../phases.ts";
import type { Place } from "./keys.ts";

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
  /** On a kept copy (`kept/NAME.sqlite3`): the key of the backup it is a copy of. */
  sourceKey?: string;
  /** The database's store name (since lifeboat 0.3). */
  name?: string;
  /** The database file's path on the machine that wrote it (since lifeboat 0.3). */
  path?: string;
}

/** A backup found by listing: its key, and what the listing told about it. */
export interface BackupInfo {
  key: string;
  /** Its order time, from the key (not necessarily when it was taken: see keys.ts). */
  createdAt: Date;
  /** The machine that wrote it, from the key. */
  machine: string;
  /** Where it lives (its layout, tier and database name), from the key. */
  place: Place;
  /** Size in bytes, when the listing gives it. */
  size?: number;
  /** The SHA-256 its seal records, when the listing showed one (see keys.ts). */
  sha256?: string;
}

/** One listing of a place: its backups newest first, and what else was found there. */
export interface Listing {
  backups: BackupInfo[];
  /** Objects in the place that are neither backups of its layout nor seals (not followed). */
  foreign: number;
  /** The keys of those other objects (kept copies, markers, foreign objects), as listed. */
  others: string[];
  /** False when the page budget ran out before the listing did (see MAX_LIST_PAGES). */
  complete: boolean;
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

/** What a store holds about one object, without its bytes. */
export interface Described {
  meta: Partial<BackupMeta>;
  /** Its size in bytes, when the store said. */
  size?: number;
}

/** A small object read whole (the manifest, a marker), with the version tag to write it back. */
export interface SmallObject {
  text: string;
  /** The store's ETag (a directory store: a hash of the text), for a conditional rewrite. */
  etag: string;
}

/**
 * When a write may happen: `ifNoneMatch` only if nothing is at the key, `ifMatch` only if the
 * object there still has that ETag; neither: unconditionally. A store that cannot check a
 * condition writes anyway (see `Store.conditionalWrites`).
 */
export interface WriteCondition {
  ifNoneMatch?: boolean;
  ifMatch?: string;
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
  /** Gets the durations of the upload ("upload", its wait for `ready` included) and "verify". */
  phases?: Phases;
}

/** The listing budget of one place: pages of up to 1,000 keys (S3's own page size). */
export const MAX_LIST_PAGES = 3;
/** The largest small object (manifest, marker) lifeboat reads; a bigger one is refused. */
export const MAX_SMALL_OBJECT_BYTES = 64 * 1024;

/**
 * A write refused because its condition failed: something is at the key already (a backup key
 * taken: pick a new one), or the object changed since it was read (the manifest: read it again).
 * Retryable.
 */
export class WriteConflict extends TransientError {
  /** Builds the error for `what` (an object's location). */
  constructor(what: string, cause?: unknown) {
    super(
      `${what} was written by someone else first (precondition failed)`,
      "lifeboat writes again under a new key, or reads the object again and merges",
      cause,
    );
    this.name = "WriteConflict";
  }
}

/**
 * A place backups live: an S3 prefix or a local directory. Keys and places come from `keys.ts`;
 * what a database's backups are across places is `history.ts`'s business.
 */
export interface Store {
  /** Human-readable location for log lines (never contains secrets). */
  readonly location: string;
  /**
   * Whether conditional writes are checked: "yes" once the store honoured one, "no" once it
   * answered that it does not implement them (writes then go unconditionally), else "unknown".
   */
  conditionalWrites(): "yes" | "no" | "unknown";
  /**
   * Writes a new backup object and resolves only once the store has proved it holds it (an ETag,
   * then the size and SHA-256 read back); never overwrites (`If-None-Match: *`: a key taken
   * throws WriteConflict); on failure or abort it throws and leaves nothing that a restore would
   * accept (see PutOptions for `signal` and `ready`).
   */
  put(key: string, file: string, meta: BackupMeta, opts?: PutOptions): Promise<void>;
  /**
   * The backups directly in directory `dir` (a place's `placeDir`), newest first, at most
   * `limit`, in at most MAX_LIST_PAGES requests however many other objects are there; seals
   * fill in `sha256`. An empty listing means a well-formed answer said there are none; an answer
   * that is not a listing of this store throws.
   */
  list(dir: string, limit: number): Promise<Listing>;
  /**
   * The names of the directories directly in `dir` (S3: the common prefixes of a delimited
   * listing), at most MAX_LIST_PAGES pages of them; [] when there is none.
   */
  dirs(dir: string): Promise<string[]>;
  /** Streams one backup's bytes with its metadata; throws if it cannot be read. */
  open(key: string): Promise<OpenedBackup>;
  /**
   * Writes one backup into the new file `path` (mode 0600, fsynced) and returns its metadata
   * with the SHA-256 and length of what landed; a backend that can do better than `open` (S3:
   * parallel ranges) has it. Throws, removing `path`, when the transfer fails.
   */
  download?(key: string, path: string): Promise<DownloadedBackup>;
  /**
   * One object's stored metadata and size without its bytes (S3: one HeadObject; a directory:
   * its `.json` file); undefined when the store confirmed there is no such object. Throws if it
   * cannot be read.
   */
  describe(key: string): Promise<Described | undefined>;
  /**
   * Reads a small object whole (at most MAX_SMALL_OBJECT_BYTES: a bigger one throws, exit 1);
   * undefined when the store confirmed it is not there; throws otherwise.
   */
  readSmall(key: string): Promise<SmallObject | undefined>;
  /** Writes a small object under `cond`; resolves with its new ETag; WriteConflict when refused. */
  writeSmall(key: string, text: string, cond: WriteCondition): Promise<string>;
  /**
   * Copies backup `from` to `to` inside the store (S3: server-side), replacing what is at `to`,
   * with `meta` as the copy's metadata. Throws on failure; `to` then holds what it held.
   */
  copy(from: string, to: string, meta: BackupMeta): Promise<void>;
  /**
   * Sets `key`'s tags (S3: PutObjectTagging, the tags lifecycle rules filter on; a directory has
   * no rules and ignores them). Throws on failure, with error code NotImplemented where the store
   * has no tagging.
   */
  tag(key: string, tags: Record<string, string>): Promise<void>;
  /** How many requests this store sent so far (for a debug line); absent where none are sent. */
  requests?(): number;
  /**
   * What this store learned about its server (conditional writes, ETags), for the next process
   * of the same run (`watch`'s job processes); absent where nothing is learned.
   */
  memory?(): StoreMemory;
  /** Takes over what another process's store learned (`memory`); ignores what is malformed. */
  remember?(m: unknown): void;
}

/**
 * What a store learned about its server, once per process: whether it checks conditional writes,
 * whether its ETags are the MD5 of the bytes sent. Handed on, so that each of `watch`'s job
 * processes does not learn it again (a warning, a refused write, or a whole read back per round).
 */
export interface StoreMemory {
  conditional?: "yes" | "no";
  etagsAreMd5?: boolean;
}

/** The object tag that marks a backup as superseded: the only objects tag rules expire. */
export const SUPERSEDED_TAG = { key: "lifeboat-superseded", value: "true" } as const;

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
    ...(meta.sourceKey ? { "source-key": meta.sourceKey } : {}),
    ...(meta.name ? { "db-name": meta.name } : {}),
    // S3 metadata is ASCII: the path is percent-encoded.
    ...(meta.path ? { "db-path": encodeURIComponent(meta.path) } : {}),
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
  if (rec["source-key"]) out.sourceKey = rec["source-key"];
  if (rec["db-name"] && /^[A-Za-z0-9._-]{1,64}$/.test(rec["db-name"])) out.name = rec["db-name"];
  if (rec["db-path"]) {
    try {
      // deno-lint-ignore no-control-regex
      out.path = decodeURIComponent(rec["db-path"]).replace(/[\x00-\x1f\x7f]/g, "?");
    } catch { /* not lifeboat's encoding: left out */ }
  }
  return out;
}
