/** One setup for tests that run lifeboat through the fault proxy: a fresh bucket and directory. */
import { baseEnv } from "./cli.ts";
import { type S3Proxy, startS3Proxy } from "./s3_proxy.ts";
import { type LocalS3, startLocalS3 } from "./moto.ts";

/** What a proxied scene gives a test. */
export interface ProxiedScene {
  bucket: string;
  dir: string;
  /** lifeboat's environment: the local S3 reached through the proxy, store `s3://bucket/db`. */
  env: Record<string, string>;
  /** `dir/app.db`, not created. */
  db: string;
}

let scenes = 0;

/**
 * Creates bucket `<name>-<n>` and a temporary directory, and clears the proxy's faults, requests
 * and injection count (so a test sees only its own). `restoreAttempts` bounds restore's retries.
 */
export async function proxiedScene(
  s3: LocalS3,
  proxy: S3Proxy,
  name: string,
  restoreAttempts = 3,
): Promise<ProxiedScene> {
  const bucket = `${name}-${++scenes}`;
  await s3.createBucket(bucket);
  const dir = await Deno.makeTempDir();
  proxy.reset();
  const env = baseEnv({
    ...s3.env,
    AWS_ENDPOINT_URL_S3: proxy.endpoint,
    LIFEBOAT_URL: `s3://${bucket}/db`,
    LIFEBOAT_RESTORE_ATTEMPTS: String(restoreAttempts),
  });
  return { bucket, dir, env, db: `${dir}/app.db` };
}

/** The local S3 and the fault proxy in front of it, for one test. */
export interface ProxiedS3 {
  s3: LocalS3;
  proxy: S3Proxy;
}

/**
 * Registers test `name`, run with a fresh moto_server and a fault proxy in front of it; both are
 * stopped afterwards, whether the test passes or not.
 */
export function proxiedTest(
  name: string,
  fn: (t: Deno.TestContext, env: ProxiedS3) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeResources: false,
    sanitizeOps: false,
    fn: async (t) => {
      const s3 = await startLocalS3();
      const proxy = startS3Proxy(s3.endpoint);
      try {
        await fn(t, { s3, proxy });
      } finally {
        await proxy.stop();
        await s3.stop();
      }
    },
  });
}
