/** Builds the Store that a store URL names. */
import { writeStreamHashed } from "../fsutil.ts";
import { FileStore } from "./file.ts";
import { type S3Options, type S3Settings, storeLocation, type StoreUrl } from "./settings.ts";
import type { DownloadedBackup, Store, StoreMemory } from "./store.ts";

/**
 * Returns the store for `url`; makes no request (errors surface on first use). The S3 store,
 * and with it the AWS SDK (most of lifeboat's start-up time and memory), is loaded only when a
 * store method is first called: a restore that finds the database in place never loads it.
 */
export function openStore(url: StoreUrl, s3: S3Options): Store {
  if (url.kind === "file") return new FileStore(url.dir);
  const settings = s3Settings(url, s3);
  return lazyStore(
    storeLocation(url),
    async () => new (await import("./s3.ts")).S3Store(settings),
  );
}

/** The S3 store's settings for an `s3://` URL: config's options, the bucket and lifeboat's keys. */
export function s3Settings(url: Extract<StoreUrl, { kind: "s3" }>, s3: S3Options): S3Settings {
  const { keys, ...rest } = s3;
  return {
    ...rest,
    bucket: url.bucket,
    prefix: url.prefix,
    ...(keys ? { credentials: keys } : {}),
  };
}

/** A Store that builds the real one on first use (once) and delegates every call to it. */
function lazyStore(location: string, load: () => Promise<Store>): Store {
  let loaded: Promise<Store> | undefined;
  let real: Store | undefined;
  // What an earlier process learned, handed over before the real store exists.
  let learned: unknown;
  const store = async () => {
    if (real) return real;
    real = await (loaded ??= load());
    if (learned !== undefined) real.remember?.(learned);
    return real;
  };
  return {
    location,
    conditionalWrites: () => real?.conditionalWrites() ?? "unknown",
    put: async (key, file, meta, opts) => (await store()).put(key, file, meta, opts),
    list: async (dir, limit) => (await store()).list(dir, limit),
    dirs: async (dir) => (await store()).dirs(dir),
    open: async (key) => (await store()).open(key),
    download: async (key, path) => downloadBackup(await store(), key, path),
    describe: async (key) => (await store()).describe(key),
    readSmall: async (key) => (await store()).readSmall(key),
    writeSmall: async (key, text, cond) => (await store()).writeSmall(key, text, cond),
    copy: async (from, to, meta) => (await store()).copy(from, to, meta),
    tag: async (key, tags) => (await store()).tag(key, tags),
    requests: () => real?.requests?.() ?? 0,
    memory: () => real?.memory?.() ?? (learned as StoreMemory | undefined) ?? {},
    remember: (m) => {
      if (real) real.remember?.(m);
      else learned = m;
    },
  };
}

/**
 * Writes one backup into the new file `path` (see Store.download): the store's own `download`
 * where it has one, else its `open` stream, hashed on the way. Throws, removing `path`, when the
 * transfer fails.
 */
export async function downloadBackup(
  store: Store,
  key: string,
  path: string,
): Promise<DownloadedBackup> {
  if (store.download) return await store.download(key, path);
  const opened = await store.open(key);
  return { meta: opened.meta, ...(await writeStreamHashed(opened.body, path)) };
}
