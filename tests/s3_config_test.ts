/**
 * S3 settings follow the store: addressing by endpoint, lifeboat's own variables over the shared
 * AWS ones, BUCKET_NAME for `s3:///PREFIX`, no SSE header unless asked. The request URLs are the
 * ones the SDK really builds (a middleware reads them and stops the request: no network at all).
 */
import assert from "node:assert/strict";
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutBucketEncryptionCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { loadConfig, parseStoreUrl, pathStyleByDefault, s3Options } from "../src/config.ts";
import { exitCodeOf, oneLine } from "../src/errors.ts";
import { s3Settings } from "../src/store/open.ts";
import { S3Store } from "../src/store/s3.ts";
import { baseEnv, runLifeboat } from "../testkit/cli.ts";
import { addRow, makeDb } from "../testkit/sqlite.ts";
import { motoTest, tempDir } from "../testkit/scene.ts";

/** Asserts that `fn` throws a config error (exit 2) whose one line matches `re`. */
function configFails(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e) => exitCodeOf(e) === 2 && re.test(oneLine(e)));
}

/** What one request would have been sent as, captured just before it leaves. */
interface Sent {
  host: string;
  path: string;
  headers: Record<string, string>;
  authorization: string;
}

/** Builds the store for `env` and returns the request a command would send (never sent). */
async function sent(
  env: Record<string, string>,
  command: "list" | "put" | "get",
  url = "s3://my-backups/app",
): Promise<Sent> {
  const cfg = loadConfig({ db: "/data/db.sqlite3", url }, {
    AWS_EC2_METADATA_DISABLED: "true",
    ...env,
  });
  // Keys without touching the process environment (other test modules share it): lifeboat's
  // own when `env` has them, else stand-ins for what the SDK's chain would find.
  // The settings openStore builds, on an S3Store made at once (openStore loads it lazily).
  if (cfg.store.kind !== "s3") throw new Error(`not an S3 URL: ${url}`);
  const store = new S3Store(s3Settings(cfg.store, { ...cfg.s3, keys: cfg.s3.keys ?? STAND_IN }));
  // The SDK would read an endpoint from the process environment unless told not to: put the
  // shared one of `env` there, as lifeboat's process would have it (other tests pass theirs
  // explicitly, so this does not disturb them).
  const saved = Deno.env.get("AWS_ENDPOINT_URL_S3");
  if (env.AWS_ENDPOINT_URL_S3) Deno.env.set("AWS_ENDPOINT_URL_S3", env.AWS_ENDPOINT_URL_S3);
  let seen: Sent | undefined;
  store.client.middlewareStack.add((_next) => (args) => {
    const req = args.request as {
      hostname: string;
      path: string;
      headers: Record<string, string>;
    };
    seen = {
      host: req.hostname,
      path: req.path,
      headers: req.headers,
      authorization: req.headers.authorization ?? "",
    };
    return Promise.reject(new Error("stop before the network"));
  }, { step: "finalizeRequest", priority: "low", name: "capture" });
  const Bucket = cfg.store.kind === "s3" ? cfg.store.bucket : "";
  const cmd = command === "list"
    ? new ListObjectsV2Command({ Bucket, Prefix: "app/" })
    : command === "get"
    ? new GetObjectCommand({ Bucket, Key: "app/x" })
    : new PutObjectCommand({ Bucket, Key: "app/x", Body: "x" });
  try {
    // deno-lint-ignore no-explicit-any
    await assert.rejects(store.client.send(cmd as any), /stop before the network/);
  } finally {
    if (env.AWS_ENDPOINT_URL_S3) {
      if (saved === undefined) Deno.env.delete("AWS_ENDPOINT_URL_S3");
      else Deno.env.set("AWS_ENDPOINT_URL_S3", saved);
    }
  }
  assert.ok(seen, "the request reached the capture middleware");
  return seen;
}

const STAND_IN = { accessKeyId: "AKIDSTANDIN", secretAccessKey: "stand-in-secret" };
const KEYS = { AWS_ACCESS_KEY_ID: "AKIDSHARED", AWS_SECRET_ACCESS_KEY: "shared-secret" };

Deno.test("addressing: virtual-hosted for AWS and named hosts, path style for loopback and IPs", () => {
  assert.equal(pathStyleByDefault(undefined), false, "AWS");
  for (
    const named of [
      "https://fly.storage.tigris.dev",
      "https://t3.storage.dev",
      "https://0123abc.r2.cloudflarestorage.com",
      "https://s3.eu-west-1.amazonaws.com",
      "http://minio.internal:9000",
    ]
  ) assert.equal(pathStyleByDefault(named), false, named);
  for (
    const local of [
      "http://127.0.0.1:9000",
      "http://10.0.0.5:7480",
      "http://[::1]:9000",
      "http://[fd00::1]:9000",
      "http://localhost:9000",
      "http://rgw.localhost:7480",
    ]
  ) assert.equal(pathStyleByDefault(local), true, local);

  assert.equal(s3Options({}).forcePathStyle, false);
  const tigris = s3Options({ AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev" });
  assert.equal(tigris.forcePathStyle, false);
  assert.equal(tigris.checksum, "when_required");
  assert.equal(s3Options({ AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" }).forcePathStyle, true);
  assert.equal(s3Options({ AWS_ENDPOINT_URL_S3: "http://[::1]:9000" }).forcePathStyle, true);
  assert.equal(s3Options({ AWS_ENDPOINT_URL: "http://localhost:9000" }).forcePathStyle, true);
  // The explicit setting wins both ways.
  const forced = { LIFEBOAT_S3_FORCE_PATH_STYLE: "true" };
  assert.equal(
    s3Options({ ...forced, AWS_ENDPOINT_URL_S3: "https://minio.example" }).forcePathStyle,
    true,
  );
  assert.equal(
    s3Options({ LIFEBOAT_S3_FORCE_PATH_STYLE: "false", AWS_ENDPOINT_URL_S3: "http://127.0.0.1:1" })
      .forcePathStyle,
    false,
  );
  configFails(() => s3Options({ LIFEBOAT_S3_FORCE_PATH_STYLE: "maybe" }), /FORCE_PATH_STYLE/);
});

Deno.test("addressing: the SDK sends BUCKET.HOST/KEY for AWS and Tigris, HOST/BUCKET/KEY for loopback", async () => {
  const aws = await sent({ ...KEYS, AWS_REGION: "eu-west-1" }, "list");
  assert.equal(aws.host, "my-backups.s3.eu-west-1.amazonaws.com");
  assert.equal(aws.path, "/");
  const tigris = await sent(
    { ...KEYS, AWS_REGION: "auto", AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev" },
    "get",
  );
  assert.equal(tigris.host, "my-backups.fly.storage.tigris.dev");
  assert.equal(tigris.path, "/app/x");
  const local = await sent({ ...KEYS, AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" }, "get");
  assert.equal(local.host, "127.0.0.1");
  assert.equal(local.path, "/my-backups/app/x");
  const v6 = await sent({ ...KEYS, AWS_ENDPOINT_URL_S3: "http://[::1]:9000" }, "get");
  assert.equal(v6.path, "/my-backups/app/x");
  const forced = await sent({
    ...KEYS,
    AWS_ENDPOINT_URL_S3: "https://minio.example",
    LIFEBOAT_S3_FORCE_PATH_STYLE: "true",
  }, "get");
  assert.equal(forced.host, "minio.example");
  assert.equal(forced.path, "/my-backups/app/x");
});

Deno.test("encryption: no SSE header by default; AES256 or aws:kms with a key only when asked", async () => {
  assert.equal(s3Options({}).sse, "none");
  const plain = await sent({ ...KEYS }, "put");
  assert.deepEqual(
    Object.keys(plain.headers).filter((h) => h.startsWith("x-amz-server-side-encryption")),
    [],
    "the bucket's default encryption (SSE-S3 or its KMS key) applies",
  );
  const kms = s3Options({ LIFEBOAT_S3_SSE: "aws:kms", LIFEBOAT_S3_KMS_KEY_ID: "alias/backups" });
  assert.equal(kms.sse, "aws:kms");
  assert.equal(kms.kmsKeyId, "alias/backups");
  assert.equal(s3Options({ LIFEBOAT_S3_SSE: "aes256" }).sse, "AES256");
  configFails(() => s3Options({ LIFEBOAT_S3_KMS_KEY_ID: "k" }), /LIFEBOAT_S3_SSE is not aws:kms/);
});

Deno.test("lifeboat's own endpoint, region and keys win over the shared AWS_* ones", async () => {
  // The app talks to Tigris with the shared variables; lifeboat goes to AWS with a role.
  const app = {
    ...KEYS,
    AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev",
    AWS_REGION: "auto",
    AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/lifeboat",
    FLY_MACHINE_ID: "m1",
  };
  const toAws = s3Options({ ...app, LIFEBOAT_S3_ENDPOINT: "aws", LIFEBOAT_S3_REGION: "eu-west-1" });
  assert.equal(toAws.endpoint, undefined);
  assert.equal(toAws.region, "eu-west-1");
  assert.equal(toAws.forcePathStyle, false);
  assert.equal(toAws.checksum, "when_supported");
  assert.equal(toAws.role?.roleArn, app.AWS_ROLE_ARN);
  assert.equal(toAws.role?.stsRegion, "eu-west-1");
  configFails(
    () => s3Options({ ...app, LIFEBOAT_S3_ENDPOINT: "aws" }),
    /AWS_REGION=auto is a Tigris\/R2 region.*LIFEBOAT_S3_REGION/,
  );
  // The other way round: the app uses AWS with a role, lifeboat uses its own Tigris keys.
  const own = s3Options({
    AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/app",
    AWS_REGION: "eu-west-1",
    LIFEBOAT_S3_ENDPOINT: "https://fly.storage.tigris.dev/",
    LIFEBOAT_S3_REGION: "auto",
    LIFEBOAT_ACCESS_KEY_ID: "tid_lifeboat",
    LIFEBOAT_SECRET_ACCESS_KEY: "tsec_lifeboat",
  });
  assert.equal(own.endpoint, "https://fly.storage.tigris.dev");
  assert.equal(own.region, "auto");
  assert.equal(own.role, undefined, "lifeboat's keys, not the app's role");
  assert.deepEqual(own.keys, { accessKeyId: "tid_lifeboat", secretAccessKey: "tsec_lifeboat" });
  // The app's endpoint in the process environment does not redirect lifeboat's AWS requests.
  const awsDespiteEnv = await sent({
    ...KEYS,
    AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev",
    AWS_REGION: "auto",
    LIFEBOAT_S3_ENDPOINT: "aws",
    LIFEBOAT_S3_REGION: "eu-west-1",
  }, "list");
  assert.equal(awsDespiteEnv.host, "my-backups.s3.eu-west-1.amazonaws.com");
  // The keys are what the request is signed with.
  const req = await sent({
    ...KEYS,
    LIFEBOAT_S3_ENDPOINT: "https://fly.storage.tigris.dev",
    LIFEBOAT_ACCESS_KEY_ID: "tid_lifeboat",
    LIFEBOAT_SECRET_ACCESS_KEY: "tsec_lifeboat",
  }, "list");
  assert.match(req.authorization, /Credential=tid_lifeboat\//);
  assert.equal(req.host, "my-backups.fly.storage.tigris.dev");
  // Half a pair is a config error that names the missing half, never the key itself.
  assert.throws(
    () => s3Options({ LIFEBOAT_ACCESS_KEY_ID: "tid_half" }),
    (e) =>
      exitCodeOf(e) === 2 && /LIFEBOAT_SECRET_ACCESS_KEY is not set/.test(oneLine(e)) &&
      !oneLine(e).includes("tid_half"),
  );
  configFails(
    () => s3Options({ LIFEBOAT_SECRET_ACCESS_KEY: "x" }),
    /LIFEBOAT_ACCESS_KEY_ID is not set/,
  );
  configFails(
    () => s3Options({ LIFEBOAT_S3_ENDPOINT: "tigris" }),
    /LIFEBOAT_S3_ENDPOINT .*not an http/,
  );
  assert.equal(
    s3Options({
      AWS_ENDPOINT_URL_S3: "http://127.0.0.1:1",
      LIFEBOAT_S3_ENDPOINT: "http://127.0.0.1:2",
    })
      .endpoint,
    "http://127.0.0.1:2",
  );
  assert.equal(
    s3Options({ AWS_REGION: "eu-west-1", LIFEBOAT_S3_REGION: "us-west-2" }).region,
    "us-west-2",
  );
  assert.equal(s3Options({ AWS_DEFAULT_REGION: "ap-south-1" }).region, "ap-south-1");
  assert.equal(s3Options({}).region, "us-east-1");
});

Deno.test("session name: LIFEBOAT_ROLE_SESSION_NAME wins over the AWS_ROLE_SESSION_NAME fly exports", () => {
  const role = { AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/r", FLY_MACHINE_ID: "abc123" };
  assert.equal(s3Options(role).role?.sessionName, "lifeboat-abc123");
  const fly = { ...role, AWS_ROLE_SESSION_NAME: "abc123" };
  assert.equal(s3Options(fly).role?.sessionName, "abc123", "fly's own value applies as is");
  assert.equal(
    s3Options({ ...fly, LIFEBOAT_ROLE_SESSION_NAME: "lifeboat-backups" }).role?.sessionName,
    "lifeboat-backups",
  );
  configFails(
    () => s3Options({ ...fly, LIFEBOAT_ROLE_SESSION_NAME: "no spaces" }),
    /LIFEBOAT_ROLE_SESSION_NAME "no spaces" is not valid/,
  );
});

Deno.test("BUCKET_NAME is the bucket of s3:///PREFIX and s3://; an explicit bucket wins", () => {
  assert.deepEqual(parseStoreUrl("s3:///apps/demo/", "/", "tigris-bucket"), {
    kind: "s3",
    bucket: "tigris-bucket",
    prefix: "apps/demo",
  });
  assert.deepEqual(parseStoreUrl("s3://", "/", "tigris-bucket"), {
    kind: "s3",
    bucket: "tigris-bucket",
    prefix: "",
  });
  assert.deepEqual(parseStoreUrl("s3://other-bucket/p", "/", "tigris-bucket"), {
    kind: "s3",
    bucket: "other-bucket",
    prefix: "p",
  });
  const cfg = loadConfig({ db: "/d.db" }, { LIFEBOAT_URL: "s3:///app", BUCKET_NAME: "from-fly" });
  assert.deepEqual(cfg.store, { kind: "s3", bucket: "from-fly", prefix: "app" });
  configFails(
    () => loadConfig({ db: "/d.db" }, { LIFEBOAT_URL: "s3:///app" }),
    /s3:\/\/\/app names no bucket and BUCKET_NAME is not set/,
  );
  configFails(
    () => parseStoreUrl("s3:///app", "/", "Bad_Name"),
    /invalid S3 bucket name "Bad_Name".*BUCKET_NAME/,
  );
});

Deno.test("fly storage create's variables alone are a working Tigris setup", async () => {
  // What `fly storage create` sets as secrets, plus lifeboat's URL and database.
  const fly = {
    AWS_ACCESS_KEY_ID: "tid_x",
    AWS_SECRET_ACCESS_KEY: "tsec_x",
    AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev",
    AWS_REGION: "auto",
    BUCKET_NAME: "my-app-bucket",
  };
  const cfg = loadConfig({ db: "/data/db.sqlite3" }, { ...fly, LIFEBOAT_URL: "s3:///backups" });
  assert.equal(cfg.s3.forcePathStyle, false);
  assert.equal(cfg.s3.sse, "none");
  assert.equal(cfg.s3.checksum, "when_required");
  const req = await sent(fly, "put", "s3:///backups");
  assert.equal(req.host, "my-app-bucket.fly.storage.tigris.dev");
  assert.equal(req.path, "/app/x");
  assert.ok(!("x-amz-server-side-encryption" in req.headers));
});

motoTest(
  "end to end: the bucket's default KMS key applies; AES256 only when asked; s3:///PREFIX uses BUCKET_NAME",
  async (_t, s3) => {
    const dir = await tempDir();
    const client = s3.client();
    try {
      const Bucket = "kms-default";
      await s3.createBucket(Bucket);
      const KMSMasterKeyID = "arn:aws:kms:us-east-1:123456789012:key/0000-backups";
      await client.send(
        new PutBucketEncryptionCommand({
          Bucket,
          ServerSideEncryptionConfiguration: {
            Rules: [{
              ApplyServerSideEncryptionByDefault: { SSEAlgorithm: "aws:kms", KMSMasterKeyID },
            }],
          },
        }),
      );
      makeDb(`${dir}/app.db`, 20);
      /** Backs up with `extra` settings and returns the new object's encryption. */
      const backup = async (extra: Record<string, string>) => {
        const before = await s3.backupKeys(Bucket, "app/");
        const env = baseEnv({
          ...s3.env,
          BUCKET_NAME: Bucket,
          LIFEBOAT_URL: "s3:///app",
          ...extra,
        });
        addRow(`${dir}/app.db`, crypto.randomUUID());
        const r = await runLifeboat(["backup", "--db", `${dir}/app.db`], env);
        assert.equal(r.code, 0, r.stderr);
        // Backups only: the kept copy (kept/app.sqlite3, a custom endpoint keeps one) is replaced.
        const added = (await s3.backupKeys(Bucket, "app/")).filter((k) => !before.includes(k));
        assert.equal(added.length, 1, `one new backup under s3://${Bucket}/app/: ${added}`);
        const head = await client.send(new HeadObjectCommand({ Bucket, Key: added[0] }));
        return [head.ServerSideEncryption, head.SSEKMSKeyId];
      };
      assert.deepEqual(
        await backup({}),
        ["aws:kms", KMSMasterKeyID],
        "the bucket's key, not bypassed",
      );
      assert.deepEqual(await backup({ LIFEBOAT_S3_SSE: "AES256" }), ["AES256", undefined]);
    } finally {
      client.destroy();
    }
  },
);
