/** A store in a local directory: one file per backup plus a `.json` metadata sidecar. */
import { basename, dirname, join } from "node:path";
import { operationError, TransientError } from "../errors.ts";
import { fsyncDir, fsyncFile, randomSuffix, removeIfExists } from "../fsutil.ts";
import { BACKUPS_DIR, checkKey, MARKER_NAME, parseKey } from "./keys.ts";
import {
  type BackupInfo,
  type BackupMeta,
  markerFromJson,
  markerToJson,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type PutOptions,
  type Store,
  type StoreMarker,
} from "./store.ts";

/** Backups in `dir/backups/` (legacy ones in `dir/`), with the marker at `dir/lifeboat.json`. */
export class FileStore implements Store {
  readonly location: string;

  /** Creates a store over `dir` (an absolute path); nothing is touched until first use. */
  constructor(readonly dir: string) {
    this.location = `file://${dir}`;
  }

  /**
   * Copies `file` in under a temporary name, fsyncs it, links it to `key` (never replaces), then
   * checks the stored size and metadata against `meta`.
   */
  async put(key: string, file: string, meta: BackupMeta, opts: PutOptions = {}): Promise<void> {
    const { signal, ready } = opts;
    ready?.catch(() => {}); // awaited before the link that makes it visible; never unhandled
    const target = this.pathOf(key);
    const dir = dirname(target);
    await Deno.mkdir(dir, { recursive: true });
    const tmp = join(dir, `.${basename(target)}.${randomSuffix()}.partial`);
    const sidecar = `${target}.json`;
    let ownSidecar = false;
    try {
      {
        using src = await Deno.open(file, { read: true });
        const dst = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
        await src.readable.pipeTo(dst.writable, { signal, preventClose: false });
      }
      await fsyncFile(tmp);
      await Deno.writeTextFile(sidecar, JSON.stringify(metaToRecord(meta)), {
        createNew: true,
        mode: 0o600,
      });
      ownSidecar = true;
      await fsyncFile(sidecar);
      await ready;
      signal?.throwIfAborted();
      await Deno.link(tmp, target); // fails if the key exists: never overwrite
      await fsyncDir(dir);
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

  /** Lists backup files newest first (legacy ones when there are none); throws if `dir` is missing. */
  async newest(limit: number): Promise<BackupInfo[]> {
    const current = await this.names(join(this.dir, BACKUPS_DIR), `${BACKUPS_DIR}/`);
    const found = current.length > 0 ? current : await this.names(this.dir, "");
    found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    const out = found.slice(0, limit);
    for (const info of out) {
      info.size = (await Deno.stat(this.pathOf(info.key))).size;
    }
    return out;
  }

  /** Opens a backup for streaming; a missing or unreadable sidecar yields empty metadata. */
  async open(key: string): Promise<OpenedBackup> {
    const path = this.pathOf(key);
    const file = await Deno.open(path, { read: true });
    let meta = {};
    try {
      meta = metaFromRecord(JSON.parse(await Deno.readTextFile(`${path}.json`)));
    } catch {
      // Unverifiable: restore will reject it for lack of a checksum.
    }
    return { body: file.readable, meta };
  }

  /** Reads a backup's `.json` metadata file; a missing or malformed one yields `{}`. */
  async describe(key: string): Promise<Partial<BackupMeta>> {
    try {
      return metaFromRecord(JSON.parse(await Deno.readTextFile(`${this.pathOf(key)}.json`)));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound || e instanceof SyntaxError) return {};
      throw e;
    }
  }

  /** Reads `dir/lifeboat.json`; undefined when absent from an existing directory. */
  async marker(): Promise<StoreMarker | undefined> {
    const path = join(this.dir, MARKER_NAME);
    try {
      return markerFromJson(await Deno.readTextFile(path), path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    }
    await this.names(this.dir, ""); // throws a clear error when the store directory is missing
    return undefined;
  }

  /** Creates `dir/lifeboat.json` (mode 0600) unless it exists, and fsyncs it. */
  async putMarker(marker: StoreMarker): Promise<void> {
    const path = join(this.dir, MARKER_NAME);
    try {
      await Deno.writeTextFile(path, markerToJson(marker), { createNew: true, mode: 0o600 });
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) return;
      throw e;
    }
    await fsyncFile(path);
    await fsyncDir(this.dir);
  }

  /** A directory has no lifecycle rule: nothing expires, so there is nothing to mark. */
  supersede(key: string): Promise<void> {
    this.pathOf(key);
    return Promise.resolve();
  }

  /** Backup keys of the files in `dir` (prefixed with `keyDir`); [] when a sub-directory is missing. */
  private async names(dir: string, keyDir: string): Promise<BackupInfo[]> {
    const found: BackupInfo[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        const parsed = entry.isFile ? parseKey(keyDir + entry.name) : undefined;
        if (parsed) {
          found.push({
            key: keyDir + entry.name,
            createdAt: new Date(parsed.ms),
            machine: parsed.machine,
          });
        }
      }
    } catch (e) {
      const dir = await Deno.stat(this.dir).catch(() => undefined);
      if (e instanceof Deno.errors.NotADirectory && !dir?.isDirectory) {
        throw operationError(
          `the store ${this.dir} is not a directory`,
          "Point --url / LIFEBOAT_URL at a directory, not a file (lifeboat keeps backups/ in it)",
          e,
        );
      }
      if (!(e instanceof Deno.errors.NotFound)) throw e;
      if (keyDir !== "") return found;
      throw operationError(
        `store directory ${this.dir} does not exist`,
        "Create it, or fix --url / LIFEBOAT_URL",
        e,
      );
    }
    return found;
  }

  private pathOf(key: string): string {
    const path = join(this.dir, checkKey(key));
    if (!path.startsWith(this.dir + "/")) throw new Error(`key escapes the store: ${key}`);
    return path;
  }
}
