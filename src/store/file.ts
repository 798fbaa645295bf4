/** A store in a local directory: one file per backup plus a `.json` metadata sidecar. */
import { dirname, join } from "node:path";
import { operationError } from "../errors.ts";
import { fsyncDir, fsyncFile, randomSuffix, removeIfExists } from "../fsutil.ts";
import { parseKey } from "./keys.ts";
import {
  type BackupInfo,
  type BackupMeta,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type Store,
} from "./store.ts";

/** Backups in `dir`, named by the shared key scheme. */
export class FileStore implements Store {
  readonly location: string;

  /** Creates a store over `dir` (an absolute path); nothing is touched until first use. */
  constructor(readonly dir: string) {
    this.location = `file://${dir}`;
  }

  /** Copies `file` in under a temporary name, fsyncs it, then links it to `key` (never replaces). */
  async put(key: string, file: string, meta: BackupMeta, signal?: AbortSignal): Promise<void> {
    const target = this.pathOf(key);
    await Deno.mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.${key}.${randomSuffix()}.partial`);
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
      signal?.throwIfAborted();
      await Deno.link(tmp, target); // fails if the key exists: never overwrite
      await fsyncDir(this.dir);
    } catch (e) {
      if (ownSidecar) await removeIfExists(sidecar).catch(() => {});
      throw e;
    } finally {
      await removeIfExists(tmp).catch(() => {});
    }
  }

  /** Lists backup files newest first; throws if the directory is missing or unreadable. */
  async newest(limit: number): Promise<BackupInfo[]> {
    const found: BackupInfo[] = [];
    try {
      for await (const entry of Deno.readDir(this.dir)) {
        const parsed = entry.isFile ? parseKey(entry.name) : undefined;
        if (parsed) found.push({ key: entry.name, createdAt: new Date(parsed.ms) });
      }
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw operationError(
          `store directory ${this.dir} does not exist`,
          "Create it, or fix --url / LIFEBOAT_URL",
          e,
        );
      }
      throw e;
    }
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

  private pathOf(key: string): string {
    if (!parseKey(key)) throw new Error(`not a backup key: ${JSON.stringify(key)}`);
    const path = join(this.dir, key);
    if (dirname(path) !== this.dir) throw new Error(`key escapes the store: ${key}`);
    return path;
  }
}
