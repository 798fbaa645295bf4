/** A throwaway moto_server (S3 + STS) on a free loopback port, for tests and benchmarks. */
import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { textLines } from "./cli.ts";

/** A running local S3 server and the environment that points the AWS SDK at it. */
export interface LocalS3 {
  endpoint: string;
  port: number;
  /** Environment for lifeboat / the SDK: test keys, region, endpoints, metadata disabled. */
  env: Record<string, string>;
  /** Creates a bucket (idempotent); throws on any other failure. */
  createBucket(name: string): Promise<void>;
  /** Lists the object keys under `prefix` (one page, up to 1,000), straight from the server. */
  keys(bucket: string, prefix?: string): Promise<string[]>;
  /** The backup objects among `keys` (every layout; not kept copies or seals), newest first. */
  backupKeys(bucket: string, prefix?: string): Promise<string[]>;
  /** Counts the multipart uploads that were started and neither completed nor aborted. */
  pendingUploads(bucket: string): Promise<number>;
  /** An SDK client straight to this server (not through any proxy); the caller destroys it. */
  client(): S3Client;
  /** Puts a one-byte object at each of `keys`, 32 at a time; throws on the first failure. */
  putObjects(bucket: string, keys: string[]): Promise<void>;
  /** Rewrites object `key` with its bytes 4096–8191 (a database's page 2) overwritten, metadata kept. */
  damagePage2(bucket: string, key: string): Promise<void>;
  /** Stops the server; safe to call twice. */
  stop(): Promise<void>;
}

/** Environment every test and benchmark must use: never reach the EC2 metadata address. */
export const SAFE_AWS_ENV: Record<string, string> = {
  AWS_EC2_METADATA_DISABLED: "true",
  AWS_ACCESS_KEY_ID: "testing",
  AWS_SECRET_ACCESS_KEY: "testing",
  AWS_REGION: "us-east-1",
};

/** An SDK client for `endpoint` with the test keys, configured as lifeboat configures it there. */
export function s3Client(endpoint: string): S3Client {
  return new S3Client({
    region: SAFE_AWS_ENV.AWS_REGION,
    endpoint,
    forcePathStyle: true,
    credentials: {
      accessKeyId: SAFE_AWS_ENV.AWS_ACCESS_KEY_ID,
      secretAccessKey: SAFE_AWS_ENV.AWS_SECRET_ACCESS_KEY,
    },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** Puts a one-byte object at each of `keys` through `client`, `lanes` at a time. */
export async function putObjects(
  client: S3Client,
  bucket: string,
  keys: string[],
  lanes = 32,
): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < keys.length) {
      const Key = keys[next++];
      await client.send(new PutObjectCommand({ Bucket: bucket, Key, Body: "x" }));
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));
}

/**
 * The endpoint of one moto_server shared by every test file of a run, set by scripts/run_tests.ts:
 * one server instead of one per file saves about 1.5 s of CPU and a second of start-up per file.
 */
export const SHARED_S3_VAR = "LIFEBOAT_TEST_S3_ENDPOINT";

/**
 * The shared moto_server of SHARED_S3_VAR when it is set (its `stop()` leaves it running for the
 * other files), else a moto_server of this caller's own (see startOwnLocalS3).
 */
export async function startLocalS3(): Promise<LocalS3> {
  const shared = Deno.env.get(SHARED_S3_VAR);
  if (!shared) return await startOwnLocalS3();
  const url = new URL(shared);
  if (url.hostname !== "127.0.0.1") {
    throw new Error(`${SHARED_S3_VAR} must be on 127.0.0.1: ${shared}`);
  }
  return localS3(url.origin, Number(url.port), async () => {});
}

/**
 * Starts moto_server on a port of the kernel's choosing (`-p 0`: it prints the port it bound, so no
 * other process can take it in between) and waits until it answers; throws if it does not within
 * 60 s or exits first.
 */
export async function startOwnLocalS3(): Promise<LocalS3> {
  const child = new Deno.Command("moto_server", {
    args: ["-H", "127.0.0.1", "-p", "0"],
    env: { PYTHONUNBUFFERED: "1" },
    stdout: "null",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  };
  // werkzeug says where it listens on stderr, then logs every request there: read it to the end.
  const said: string[] = [];
  const lines = textLines(child.stderr);
  const found = (async () => {
    for await (const line of lines) {
      said.push(line);
      const m = /Running on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
      if (m) return Number(m[1]);
    }
    return undefined;
  })();
  const timer = setTimeout(kill, 60_000);
  const port = await found;
  clearTimeout(timer);
  if (port === undefined) {
    kill();
    await child.status;
    throw new Error(`moto_server did not start within 60 s:\n${said.slice(-10).join("\n")}`);
  }
  (async () => {
    for await (const _ of lines) { /* request logs */ }
  })();
  const endpoint = `http://127.0.0.1:${port}`;
  const res = await fetch(`${endpoint}/moto-api/`);
  await res.body?.cancel();
  let stopped = false;
  return localS3(endpoint, port, async () => {
    if (stopped) return;
    stopped = true;
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    await child.status;
  });
}

/** The LocalS3 handle of the server at `endpoint`; `stop` is what its stop() does. */
function localS3(endpoint: string, port: number, stop: () => Promise<void>): LocalS3 {
  const keys = async (bucket: string, prefix = "") => {
    const q = new URLSearchParams({ "list-type": "2", prefix });
    const xml = await (await fetch(`${endpoint}/${bucket}?${q}`)).text();
    return [...xml.matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) => m[1]);
  };
  const env = {
    ...SAFE_AWS_ENV,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ENDPOINT_URL_STS: endpoint,
  };
  return {
    endpoint,
    port,
    env,
    async createBucket(name: string) {
      const res = await fetch(`${endpoint}/${name}`, { method: "PUT" });
      const text = await res.text();
      if (!res.ok && !text.includes("BucketAlreadyOwnedByYou")) {
        throw new Error(`createBucket ${name}: ${res.status} ${text}`);
      }
    },
    keys,
    async backupKeys(bucket: string, prefix = "") {
      // Newest first across every place: by the inverted order time that starts each file name.
      const order = (k: string) => /(?:^|\/)(\d{13})-[^/]*\.sqlite3$/.exec(k)?.[1];
      return (await keys(bucket, prefix)).filter((k) => order(k) !== undefined)
        .sort((a, b) => order(a)!.localeCompare(order(b)!) || a.localeCompare(b));
    },
    async pendingUploads(bucket: string) {
      const xml = await (await fetch(`${endpoint}/${bucket}?uploads`)).text();
      return [...xml.matchAll(/<UploadId>/g)].length;
    },
    client: () => s3Client(endpoint),
    async putObjects(bucket: string, keys: string[]) {
      const client = s3Client(endpoint);
      try {
        await putObjects(client, bucket, keys);
      } finally {
        client.destroy();
      }
    },
    async damagePage2(bucket: string, key: string) {
      const client = s3Client(endpoint);
      try {
        const obj = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        const bytes = await obj.Body!.transformToByteArray();
        bytes.fill(0x55, 4096, 8192);
        await client.send(
          new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, Metadata: obj.Metadata }),
        );
      } finally {
        client.destroy();
      }
    },
    stop,
  };
}
