/**
 * The store's manifest, `PREFIX/lifeboat.json`: what the store is, so that every transition (a
 * database added, removed or renamed, a config or a lifeboat version rolled back) is decided from
 * facts, never guessed from an empty listing. It names every database the prefix has held, the
 * layouts each has used, which database the legacy root layouts belong to, and the backups a
 * restore had to pass over. lifeboat 0.2's marker (format 2) grew into it: the fields 0.2 reads
 * (`format`, `createdAt`, `machine`, `version`) keep their meaning, so 0.2 still sees a marker.
 *
 * It is small (at most MAX_SMALL_OBJECT_BYTES, read whole), validated field by field (a foreign
 * or newer one is refused, never half-read), and rewritten with a conditional write (If-Match
 * its ETag) where the store supports one: two writers merge, they never drop each other's entries.
 */
import { operationError, TransientError } from "../errors.ts";
import {
  isStoreName,
  type Layout,
  LAYOUTS,
  MARKER_NAME,
  parseKey,
  sanitizeMachine,
} from "./keys.ts";
import { MAX_SMALL_OBJECT_BYTES, type Store, WriteConflict } from "./store.ts";
import { VERSION } from "../version.ts";

/** The manifest format this version writes (2 was lifeboat 0.2's marker). */
export const MANIFEST_FORMAT = 3;
/** Backups passed over by a restore that the manifest remembers per database (newest first). */
const MAX_BYPASSED = 10;
/** The longest database path the manifest records (a longer one is cut). */
const MAX_PATH = 1024;
/** Attempts at a conditional rewrite that keeps meeting another writer's. */
const WRITE_ATTEMPTS = 5;

/** A backup newer than the one restored that failed verification: never superseded. */
export interface Bypassed {
  key: string;
  /** When the restore passed over it (ISO 8601). */
  at: string;
  /** Why (the verification problem), one line. */
  problem: string;
}

/** One database the prefix has held. */
export interface ManifestDb {
  /** Its store name (keys.ts `isStoreName`). */
  name: string;
  /** The database file's path when lifeboat last backed it up (to tell a rename). */
  path?: string;
  /** When the manifest first listed it (ISO 8601). */
  since: string;
  /** Every layout its backups have been written to or taken from. */
  layouts: Layout[];
  /** Backups a restore passed over because they failed verification (at most 10). */
  bypassed?: Bypassed[];
}

/**
 * The history lifeboat ≤ 0.2 kept at the prefix's root for a database run alone (whose name was
 * never written down). Present once the store is known to have had one.
 */
export interface RootClaim {
  /** The database that took those backups as its own; absent while nobody has. */
  name?: string;
  /**
   * The order time (ISO 8601) up to which root keys are `name`'s: one ordered later can only come
   * from lifeboat ≤ 0.2 run after the claim (a downgrade), and is nobody's until claimed again.
   */
  through?: string;
}

/** The manifest, as read and as written. */
export interface Manifest {
  /** 2: the marker of lifeboat 0.2 (no databases listed); 3: this format. */
  format: number;
  /** When the store's first backup was made (the writer's clock). */
  createdAt: string;
  /** The machine that made it. */
  machine: string;
  /** The lifeboat version that last wrote the manifest. */
  version: string;
  databases: ManifestDb[];
  root?: RootClaim;
}

/** A manifest read from the store, with the ETag to rewrite it conditionally. */
export interface ReadManifest {
  manifest: Manifest;
  etag: string;
}

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const VERSION_TEXT = /^[0-9A-Za-z.+-]{1,32}$/;

/**
 * Parses and validates a manifest (format 2 or 3). Throws TransientError when the text is not
 * JSON at all (a 200 from something that is not the store: read again), LifeboatError (exit 1)
 * for a newer format or a shape lifeboat did not write.
 */
export function parseManifest(text: string, where: string): Manifest {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new TransientError(
      `${where} is not JSON (got ${JSON.stringify(text.slice(0, 40))})`,
      "lifeboat reads it again; if it persists, check that the URL and endpoint name the store " +
        "lifeboat writes to",
    );
  }
  const bad = (what: string): never => {
    throw operationError(
      `${where} is not a lifeboat manifest (${what})`,
      "Nothing was changed. Check that the URL names lifeboat's store; if a foreign " +
        `${MARKER_NAME} sits there, move it away`,
    );
  };
  if (!isRecord(v)) return bad("not an object");
  const format = v.format;
  if (typeof format !== "number" || !Number.isInteger(format)) return bad("no format number");
  if (format > MANIFEST_FORMAT) {
    throw operationError(
      `${where} has format ${format}, written by a newer lifeboat than this one ` +
        `(${MANIFEST_FORMAT})`,
      "Nothing was changed. Upgrade lifeboat to the version that wrote it (or newer)",
    );
  }
  if (format < 2) return bad(`format ${format}`);
  const createdAt = isoOf(v.createdAt) ?? bad("createdAt");
  const machine = typeof v.machine === "string" && v.machine !== ""
    ? sanitizeMachine(v.machine)
    : bad("machine");
  const version = typeof v.version === "string" && VERSION_TEXT.test(v.version) ? v.version : "";
  if (format === 2) return { format, createdAt, machine, version, databases: [] };
  if (!Array.isArray(v.databases)) return bad("no databases list");
  const databases = v.databases.map((d, i) => databaseOf(d) ?? bad(`databases[${i}]`));
  const names = new Set(databases.map((d) => d.name));
  if (names.size !== databases.length) return bad("a database listed twice");
  let root: RootClaim | undefined;
  if (v.root !== undefined) {
    if (!isRecord(v.root)) return bad("root");
    root = {};
    if (v.root.name !== undefined) {
      if (typeof v.root.name !== "string" || !isStoreName(v.root.name)) return bad("root.name");
      root.name = v.root.name;
    }
    if (v.root.through !== undefined) {
      root.through = isoOf(v.root.through) ?? bad("root.through");
    }
  }
  return { format, createdAt, machine, version, databases, ...(root ? { root } : {}) };
}

/** Serialises a manifest (one line per database); throws (exit 1) past the size limit. */
export function manifestToJson(m: Manifest): string {
  const { databases, ...head } = m;
  const lines = databases.map((d) => "  " + JSON.stringify(d));
  const body = JSON.stringify({ ...head, databases: [] });
  const text = lines.length === 0
    ? body + "\n"
    : body.replace(/"databases":\[\]/, `"databases":[\n${lines.join(",\n")}\n]`) + "\n";
  if (new TextEncoder().encode(text).length > MAX_SMALL_OBJECT_BYTES) {
    throw operationError(
      `the store's manifest would grow past ${MAX_SMALL_OBJECT_BYTES / 1024} KiB ` +
        `(${databases.length} databases)`,
      "Use one store prefix per app; move databases that are gone for good to a prefix of their own",
    );
  }
  return text;
}

/** Reads the store's manifest; undefined when the store confirmed there is none. */
export async function readManifest(store: Store): Promise<ReadManifest | undefined> {
  const got = await store.readSmall(MARKER_NAME);
  if (!got) return undefined;
  return { manifest: parseManifest(got.text, `${store.location}/${MARKER_NAME}`), etag: got.etag };
}

/**
 * Applies `change` to the store's manifest and writes it back conditionally (If-Match its ETag,
 * or If-None-Match when there is none), reading and applying again when another writer got there
 * first. `change` returns undefined when nothing needs writing. Resolves with what the store
 * holds; throws when the store cannot be read or written.
 */
export async function updateManifest(
  store: Store,
  change: (m: Manifest | undefined) => Manifest | undefined,
  known?: ReadManifest | null,
): Promise<ReadManifest | undefined> {
  let current = known === undefined ? await readManifest(store) : known ?? undefined;
  for (let attempt = 1;; attempt++) {
    const next = change(current?.manifest && structuredClone(current.manifest));
    if (!next) return current;
    try {
      const etag = await store.writeSmall(
        MARKER_NAME,
        manifestToJson(next),
        current ? { ifMatch: current.etag } : { ifNoneMatch: true },
      );
      return { manifest: next, etag };
    } catch (err) {
      if (!(err instanceof WriteConflict) || attempt >= WRITE_ATTEMPTS) throw err;
      current = await readManifest(store);
    }
  }
}

/**
 * Returns `m` in this format, to be changed and written: a copy of a format 3 manifest; 0.2's
 * marker grown into one (its first backup's date and machine kept, the root marked as having held
 * a database's history); or a new one, first written by `machine` at `now`.
 */
export function currentOf(m: Manifest | undefined, now: Date, machine: string): Manifest {
  if (m?.format === MANIFEST_FORMAT) return { ...structuredClone(m), version: VERSION };
  const fresh: Manifest = {
    format: MANIFEST_FORMAT,
    createdAt: now.toISOString(),
    machine: sanitizeMachine(machine),
    version: VERSION,
    databases: [],
  };
  return m ? { ...fresh, createdAt: m.createdAt, machine: m.machine, root: {} } : fresh;
}

/**
 * Claims the legacy root's backups ordered up to `throughMs` for database `name` (ownership moves
 * to the latest claim; a claim never shrinks), recording the root layout `layout` it took from
 * when there is one. Returns whether anything changed.
 */
export function claimRoot(
  m: Manifest,
  name: string,
  throughMs: number,
  now: Date,
  layout?: Layout,
): boolean {
  const held = m.root?.through ? Date.parse(m.root.through) : -Infinity;
  let changed = false;
  if (m.root?.name !== name || throughMs > held) {
    m.root = { name, through: new Date(Math.max(throughMs, held)).toISOString() };
    changed = true;
  }
  const db = entryOf(m, name, now);
  return (layout ? addLayout(db, layout) : false) || changed;
}

/** Returns the entry of database `name`, adding an empty one (dated `now`) when it is missing. */
export function entryOf(m: Manifest, name: string, now: Date): ManifestDb {
  let db = m.databases.find((d) => d.name === name);
  if (!db) {
    m.databases.push(db = { name, since: now.toISOString(), layouts: [] });
    m.databases.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
  return db;
}

/** Adds `layout` to a database entry; returns whether it was new. */
export function addLayout(db: ManifestDb, layout: Layout): boolean {
  if (db.layouts.includes(layout)) return false;
  db.layouts.push(layout);
  db.layouts.sort((a, b) => LAYOUTS.indexOf(a) - LAYOUTS.indexOf(b));
  return true;
}

/** Records backups passed over by a restore (newest first, the most recent 10 kept). */
export function addBypassed(db: ManifestDb, found: Bypassed[]): boolean {
  const before = JSON.stringify(db.bypassed ?? []);
  const all = [...found, ...(db.bypassed ?? []).filter((b) => !found.some((f) => f.key === b.key))];
  db.bypassed = all.slice(0, MAX_BYPASSED).map((b) => ({ ...b, problem: clean(b.problem, 200) }));
  if (db.bypassed.length === 0) delete db.bypassed;
  return JSON.stringify(db.bypassed ?? []) !== before;
}

/** Records the database's path (cut to 1,024 characters, control characters removed). */
export function setPath(db: ManifestDb, path: string): boolean {
  const p = clean(path, MAX_PATH);
  if (db.path === p) return false;
  db.path = p;
  return true;
}

function databaseOf(v: unknown): ManifestDb | undefined {
  if (!isRecord(v) || typeof v.name !== "string" || !isStoreName(v.name)) return undefined;
  const since = isoOf(v.since);
  if (!since || !Array.isArray(v.layouts)) return undefined;
  const layouts = v.layouts.filter((l): l is Layout => LAYOUTS.includes(l as Layout));
  if (layouts.length !== v.layouts.length) return undefined;
  const db: ManifestDb = { name: v.name, since, layouts };
  if (v.path !== undefined) {
    if (typeof v.path !== "string") return undefined;
    db.path = clean(v.path, MAX_PATH);
  }
  if (v.bypassed !== undefined) {
    if (!Array.isArray(v.bypassed)) return undefined;
    const list: Bypassed[] = [];
    for (const b of v.bypassed.slice(0, MAX_BYPASSED)) {
      if (!isRecord(b) || typeof b.key !== "string" || !parseKey(b.key)) return undefined;
      const at = isoOf(b.at);
      if (!at || typeof b.problem !== "string") return undefined;
      list.push({ key: b.key, at, problem: clean(b.problem, 200) });
    }
    if (list.length) db.bypassed = list;
  }
  return db;
}

function isoOf(v: unknown): string | undefined {
  return typeof v === "string" && ISO.test(v) && !Number.isNaN(Date.parse(v)) ? v : undefined;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Removes control characters and cuts to `max` characters. */
function clean(text: string, max: number): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f-\x9f]/g, "?").slice(0, max);
}
