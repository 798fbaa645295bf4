/**
 * A store in a local directory: the S3 layout as files (keys are relative paths), each backup
 * with a `.json` metadata sidecar.
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { operationError, TransientError } from "../errors.ts";
import { fsyncDir, fsyncFile, randomSuffix, removeIfExists, statIfExists } from "../fsutil.ts";
import { checkKey, isKeptKey, MARKER_NAME, parseKey, parseSeal } from "./keys.ts";
import {
  type BackupInfo,
  type BackupMeta,
  type Described,
  type Listing,
  MAX_SMALL_OBJECT_BYTES,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type PutOptions,
  type SmallObject,
  type Store,
  type WriteCondition,
  WriteConflict,
} from "./store.ts";

/** Backups under `dir` in the store layout of keys.ts, the manifest at `dir/lifeboat.json`. */
export class FileStore implements Store {
  readonly location: string;

  /** Creates a store over `dir` (an absolute path); nothing is touched until first use. */
  constructor(readonly dir: string) {
    this.location = `file://${dir}`;
  }

  /** A directory checks its conditions itself, just before the rename that writes. */
  conditionalWrites(): "yes" {
    return "yes";
  }

  /**
   * Copies `file` in under a temporary name, fsyncs it, links it to `key` (never replaces: a
   * taken key is WriteConflict), then checks the stored size and metadata against `meta`.
   */
  async put(key: string, file: string, meta: BackupMeta, opts: PutOptions = {}): Promise<void> {
    const { signal, ready } = opts;
    ready?.catch(() => {}); // awaited before the link that makes it visible; never unhandled
    const target = this.pathOf(key);
    const sidecar = `${target}.json`;
    let ownSidecar = false;
    await this.inRoot(() => Deno.mkdir(dirname(target), { recursive: true }));
    const tmp = this.tempBeside(target);
    try {
      await copyPrivate(file, tmp, signal);
      await Deno.writeTextFile(sidecar, JSON.stringify(metaToRecord(meta)), {
        createNew: true,
        mode: 0o600,
      }).catch((e) => {
        throw e instanceof Deno.errors.AlreadyExists ? new WriteConflict(target, e) : e;
      });
      ownSidecar = true;
      await fsyncFile(sidecar);
      await ready;
      signal?.throwIfAborted();
      await Deno.link(tmp, target).catch((e) => { // fails if the key exists: never overwrite
        throw e instanceof Deno.errors.AlreadyExists ? new WriteConflict(target, e) : e;
      });
      await fsyncDir(dirname(target));
    } catch (e) {
      if (ownSidecar) await removeIfExists(sidecar).catch(() => {});
      throw e;
    } finally {
      await removeIfExists(tmp).catch(() => {});
    }
    const stored = metaFromRecord(JSON.parse(await Deno.readTextFile(sidecar)));
    const size = (await Deno.stat(target)).size;
    if (size !== meta.size || stored.sha256 !== meta.sha256) {
      throw new TransientError(
        `${target} does not hold the backup just written (size ${size})`,
        "lifeboat writes it again under a new key; if it persists, check the store's disk",
      );
    }
  }

  /**
   * The backup files directly in `dir` (relative to the store), newest first, with their sizes;
   * seals fill in `sha256`. A missing sub-directory holds none; a missing store throws.
   */
  async list(dir: string, limit: number): Promise<Listing> {
    const found: BackupInfo[] = [];
    const seals = new Map<string, string>();
    const others: string[] = [];
    let foreign = 0;
    const path = join(this.dir, dir);
    try {
      for await (const entry of Deno.readDir(path)) {
        if (!entry.isFile) continue;
        const key = dir + entry.name;
        const parsed = parseKey(key);
        const seal = parsed ? undefined : parseSeal(key);
        if (parsed) {
          const { ms, machine, place } = parsed;
          found.push({ key, createdAt: new Date(ms), machine, place });
        } else if (seal) seals.set(seal.key, seal.sha256);
        else if (!isOwnFile(entry.name)) {
          others.push(key);
          if (!isKeptKey(key)) foreign++;
        }
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw this.unreadable(e);
      await this.inRoot(() => Promise.resolve()); // a missing store is an error, a sub-dir is not
    }
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const backups = found.slice(0, limit);
    for (const b of backups) {
      b.size = (await Deno.stat(this.pathOf(b.key))).size;
      const sha256 = seals.get(b.key);
      if (sha256) b.sha256 = sha256;
    }
    return { backups, foreign, others: others.sort(), complete: true };
  }

  /** The sub-directories of `dir` (relative to the store); [] when it is missing. */
  async dirs(dir: string): Promise<string[]> {
    const out: string[] = [];
    try {
      for await (const e of Deno.readDir(join(this.dir, dir))) if (e.isDirectory) out.push(e.name);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw this.unreadable(e);
      await this.inRoot(() => Promise.resolve());
    }
    return out.sort();
  }

  /** Opens a backup for streaming; a missing or unreadable sidecar yields empty metadata. */
  async open(key: string): Promise<OpenedBackup> {
    const path = this.pathOf(key);
    const file = await Deno.open(path, { read: true });
    return { body: file.readable, meta: await readSidecar(path) };
  }

  /** A backup's size and `.json` metadata ({} when that is missing); undefined when it is not there. */
  async describe(key: string): Promise<Described | undefined> {
    const path = this.pathOf(key);
    const stat = await statIfExists(path);
    if (!stat) return undefined;
    return { meta: await readSidecar(path), size: stat.size };
  }

  /** Reads `dir/key` whole (a bigger one than MAX_SMALL_OBJECT_BYTES throws, exit 1). */
  async readSmall(key: string): Promise<SmallObject | undefined> {
    const path = join(this.dir, key);
    const stat = await this.inRoot(() => statIfExists(path));
    if (!stat) return undefined;
    if (stat.size > MAX_SMALL_OBJECT_BYTES) {
      throw operationError(
        `${path} is ${stat.size} bytes, more than the ${MAX_SMALL_OBJECT_BYTES / 1024} KiB ` +
          "lifeboat reads of it: lifeboat did not write it",
        "Nothing was changed. Check that the URL names lifeboat's store; move the file away",
      );
    }
    const text = await Deno.readTextFile(path);
    return { text, etag: etagOf(text) };
  }

  /** Writes `dir/key` (mode 0600) by an atomic rename, under `cond` (see Store.writeSmall). */
  async writeSmall(key: string, text: string, cond: WriteCondition): Promise<string> {
    const path = join(this.dir, key);
    await this.inRoot(() => Deno.mkdir(dirname(path), { recursive: true }));
    const tmp = this.tempBeside(path);
    try {
      await Deno.writeTextFile(tmp, text, { createNew: true, mode: 0o600 });
      await fsyncFile(tmp);
      if (cond.ifNoneMatch) {
        await Deno.link(tmp, path).catch((e) => {
          throw e instanceof Deno.errors.AlreadyExists ? new WriteConflict(path, e) : e;
        });
      } else {
        if (cond.ifMatch !== undefined) {
          const now = await Deno.readTextFile(path).catch(() => undefined);
          if (now === undefined || etagOf(now) !== cond.ifMatch) throw new WriteConflict(path);
        }
        await Deno.rename(tmp, path);
      }
      await fsyncDir(dirname(path));
    } finally {
      await removeIfExists(tmp).catch(() => {});
    }
    return etagOf(text);
  }

  /** Copies backup `from` over `to` with `meta` as its sidecar, each replaced by a rename. */
  async copy(from: string, to: string, meta: BackupMeta): Promise<void> {
    const target = this.pathOf(to);
    await this.inRoot(() => Deno.mkdir(dirname(target), { recursive: true }));
    const tmp = this.tempBeside(target), tmpMeta = `${tmp}.json`;
    try {
      await copyPrivate(this.pathOf(from), tmp);
      await Deno.writeTextFile(tmpMeta, JSON.stringify(metaToRecord(meta)), { mode: 0o600 });
      await fsyncFile(tmpMeta);
      await Deno.rename(tmpMeta, `${target}.json`);
      await Deno.rename(tmp, target);
      await fsyncDir(dirname(target));
    } finally {
      await removeIfExists(tmp).catch(() => {});
      await removeIfExists(tmpMeta).catch(() => {});
    }
  }

  /** A directory has no lifecycle rules: tags mean nothing to it. */
  tag(key: string, _tags: Record<string, string>): Promise<void> {
    this.pathOf(key);
    return Promise.resolve();
  }

  /** Runs `fn`; a missing store directory, or a file in its place, becomes one clear error (exit 1). */
  private async inRoot<T>(fn: () => Promise<T>): Promise<T> {
    const root = await statIfExists(this.dir);
    if (root && !root.isDirectory) throw this.notADirectory();
    if (!root) {
      throw operationError(
        `store directory ${this.dir} does not exist`,
        "Create it, or fix --url / LIFEBOAT_URL",
      );
    }
    return await fn();
  }

  /** A listing's failure: a file where the store directory should be is one clear error. */
  private unreadable(e: unknown): Error {
    return e instanceof Deno.errors.NotADirectory ? this.notADirectory(e) : e as Error;
  }

  private notADirectory(cause?: unknown): Error {
    return operationError(
      `the store ${this.dir} is not a directory`,
      "Point --url / LIFEBOAT_URL at a directory, not a file (lifeboat keeps backups/ in it)",
      cause,
    );
  }

  private tempBeside(path: string): string {
    return join(dirname(path), `.${basename(path)}.${randomSuffix()}.partial`);
  }

  private pathOf(key: string): string {
    const path = join(this.dir, checkKey(key));
    if (!path.startsWith(this.dir + "/")) throw new Error(`key escapes the store: ${key}`);
    return path;
  }
}

/** True for the files a directory store keeps beside its backups (sidecars, manifest, temps). */
function isOwnFile(name: string): boolean {
  return name.endsWith(".sqlite3.json") || name === MARKER_NAME ||
    (name.startsWith(".") && name.endsWith(".partial"));
}

/** A backup's sidecar metadata; {} when it is missing or malformed (restore then rejects it). */
async function readSidecar(path: string): Promise<Partial<BackupMeta>> {
  try {
    return metaFromRecord(JSON.parse(await Deno.readTextFile(`${path}.json`)));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError) return {};
    throw e;
  }
}

/** Copies `from` into the new private file `to` and fsyncs it. */
async function copyPrivate(from: string, to: string, signal?: AbortSignal): Promise<void> {
  using src = await Deno.open(from, { read: true });
  const dst = await Deno.open(to, { write: true, createNew: true, mode: 0o600 });
  await src.readable.pipeTo(dst.writable, { signal, preventClose: false });
  await fsyncFile(to);
}

/** A directory store's version tag of a small file: its content's hash. */
function etagOf(text: string): string {
  return `"${createHash("sha256").update(text).digest("hex").slice(0, 32)}"`;
}
