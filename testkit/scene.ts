/**
 * One setup for tests: a temporary directory that is removed when the test file ends (passed or
 * failed), a store (a fresh bucket, reached directly or through the S3 proxy, or a directory), and
 * lifeboat's environment for it.
 */
import { createHash } from "node:crypto";
import { s3Options } from "../src/config.ts";
import { S3Store } from "../src/store/s3.ts";
import { backupOk, baseEnv } from "./cli.ts";
import { addRow, makeDb } from "./sqlite.ts";
import { type S3Proxy, startS3Proxy } from "./s3_proxy.ts";
import { type LocalS3, startLocalS3 } from "./moto.ts";

const made = new Set<string>();
// A test file's module unloads once its tests are done, whether they passed or not.
globalThis.addEventListener("unload", () => {
  for (const dir of made) {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* removed already */ }
  }
});

/**
 * Creates a temporary directory that is removed, with everything in it, when the test file ends;
 * `removeTempDir` removes it sooner. `under`: a directory to make it in when that exists (e.g. a
 * tmpfs), else the system's temporary directory.
 */
export async function tempDir(prefix = "lifeboat-test-", under?: string): Promise<string> {
  const there = under && (await Deno.stat(under).then((s) => s.isDirectory, () => false));
  const dir = await Deno.makeTempDir({ prefix, ...(there ? { dir: under } : {}) });
  made.add(dir);
  return dir;
}

/** Removes a directory made by `tempDir` now (a test that makes many). */
export async function removeTempDir(dir: string): Promise<void> {
  made.delete(dir);
  await Deno.remove(dir, { recursive: true });
}

/** Test options for tests that run processes and servers (their ops outlive a test's sanitizer). */
export const LOOSE = { sanitizeResources: false, sanitizeOps: false } as const;

/** What a scene gives a test. */
export interface Scene {
  /** A fresh temporary directory (removed when the test file ends). */
  dir: string;
  /** `dir/app.db`, not created. */
  db: string;
  /** The store: `s3://bucket/prefix`, or the directory `dir/store` (created, like a bucket). */
  url: string;
  /** The bucket (empty for a directory store). */
  bucket: string;
  /** lifeboat's environment: baseEnv, the S3 endpoint (the proxy's, if any) and LIFEBOAT_URL. */
  env: Record<string, string>;
}

/** How to set a scene up. */
export interface SceneOptions {
  /** The local S3 holding the bucket; without it the store is a directory. */
  s3?: LocalS3;
  /** lifeboat reaches S3 through this proxy; its requests and faults are cleared first. */
  proxy?: S3Proxy;
  /** The bucket's name is `<name>-<file tag>-<n>`. */
  name?: string;
  /** The prefix in the bucket; default "db". */
  prefix?: string;
  /** LIFEBOAT_RESTORE_ATTEMPTS, to bound restore's retries. */
  restoreAttempts?: number;
  /** More environment. */
  env?: Record<string, string>;
}

let scenes = 0;
// Test files may share one moto_server (scripts/run_tests.ts): a tag per file (from its path, so
// the same on every run) keeps their buckets apart.
const FILE_TAG = createHash("sha256").update(Deno.mainModule).digest("hex").slice(0, 8);

/** Sets up a fresh directory and store for one test (see SceneOptions). */
export async function scene(o: SceneOptions = {}): Promise<Scene> {
  const dir = await tempDir();
  let bucket = "", url = `${dir}/store`, s3env: Record<string, string> = {};
  if (o.s3) {
    bucket = `${o.name ?? "scene"}-${FILE_TAG}-${++scenes}`;
    await o.s3.createBucket(bucket);
    url = `s3://${bucket}/${o.prefix ?? "db"}`;
    s3env = { ...o.s3.env, ...(o.proxy ? { AWS_ENDPOINT_URL_S3: o.proxy.endpoint } : {}) };
  } else {
    await Deno.mkdir(url);
  }
  o.proxy?.reset();
  const env = baseEnv({
    ...s3env,
    LIFEBOAT_URL: url,
    ...(o.restoreAttempts ? { LIFEBOAT_RESTORE_ATTEMPTS: String(o.restoreAttempts) } : {}),
    ...o.env,
  });
  return { dir, db: `${dir}/app.db`, url, bucket, env };
}

/**
 * Creates the scene's database with `rows` rows and backs it up once per tag, after adding a row
 * holding it (no tags: one backup as it is), so the last tag is the newest backup's last row;
 * throws if a backup fails. Returns the scene.
 */
export async function backedUp(s: Scene, rows: number, tags: string[] = []): Promise<Scene> {
  makeDb(s.db, rows);
  for (const tag of tags.length ? tags : [undefined]) {
    if (tag !== undefined) addRow(s.db, tag);
    await backupOk(s.db, s.env);
  }
  return s;
}

/** The local S3 and the S3 proxy in front of it, for one test. */
export interface ProxiedS3 {
  s3: LocalS3;
  proxy: S3Proxy;
}

/**
 * Registers test `name` (LOOSE), run with a moto_server (the run's shared one under scripts/run_tests.ts, else its own); the server is stopped afterwards,
 * whether the test passes or not.
 */
export function motoTest(
  name: string,
  fn: (t: Deno.TestContext, s3: LocalS3) => Promise<void>,
): void {
  Deno.test({
    name,
    ...LOOSE,
    fn: async (t) => {
      const s3 = await startLocalS3();
      try {
        await fn(t, s3);
      } finally {
        await s3.stop();
      }
    },
  });
}

/**
 * Registers test `name`, run with a moto_server (the run's shared one under scripts/run_tests.ts, else its own) and the S3 proxy in front of it; both are
 * stopped afterwards, whether the test passes or not.
 */
export function proxiedTest(
  name: string,
  fn: (t: Deno.TestContext, env: ProxiedS3) => Promise<void>,
): void {
  motoTest(name, async (t, s3) => {
    const proxy = startS3Proxy(s3.endpoint);
    try {
      await fn(t, { s3, proxy });
    } finally {
      await proxy.stop();
    }
  });
}

/** What an S3 store test gets: the store, its server and a temporary directory. */
export interface S3StoreScene {
  store: S3Store;
  local: LocalS3;
  dir: string;
}

/**
 * Registers test `name`, run against an S3Store on a moto_server (the run's shared one under scripts/run_tests.ts, else its own): bucket `bucket`, prefix
 * "p", settings from the server's environment plus `extra` (the SDK's keys are put in this
 * process's environment). The server stops afterwards, whether the test passes or not.
 */
export function s3StoreTest(
  name: string,
  bucket: string,
  extra: Record<string, string>,
  fn: (x: S3StoreScene) => Promise<void>,
): void {
  Deno.test({
    name,
    fn: async () => {
      const local = await startLocalS3();
      for (const [k, v] of Object.entries(local.env)) Deno.env.set(k, v);
      try {
        await local.createBucket(bucket);
        const settings = s3Options({ ...local.env, ...extra });
        const store = new S3Store({ ...settings, bucket, prefix: "p" });
        await fn({ store, local, dir: await tempDir() });
      } finally {
        await local.stop();
      }
    },
  });
}
