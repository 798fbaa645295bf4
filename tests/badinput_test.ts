/**
 * The bad-input corpus: every mistake gets one line naming the problem and the fix, exit 2 for
 * configuration and 1 for operation, no stack trace, nothing written to the store and the
 * local database untouched.
 */
import assert from "node:assert/strict";
import { assertOneLineError, baseEnv, runLifeboat } from "../testkit/cli.ts";
import { startS3Proxy } from "../testkit/s3_proxy.ts";
import { startLocalS3 } from "../testkit/moto.ts";
import { growDb, makeDb } from "../testkit/sqlite.ts";
import { LOOSE, tempDir } from "../testkit/scene.ts";

/** One case: arguments (DB = the good database, DIR = a scratch dir), extra env, code, message. */
type Case = [name: string, args: string[], env: Record<string, string>, code: 1 | 2, re: RegExp];

const ROLE = {
  AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/lifeboat",
  LIFEBOAT_FLY_API_SOCKET: "DIR/no-socket",
};

const CASES: Case[] = [
  // store URLs
  [
    "bucket with capitals",
    ["backup", "--url", "s3://Bad_Bucket/x"],
    {},
    2,
    /invalid S3 bucket name "Bad_Bucket".*3–63 lowercase/,
  ],
  ["bucket too short", ["backup", "--url", "s3://ab/x"], {}, 2, /invalid S3 bucket name "ab"/],
  [
    "no bucket and no BUCKET_NAME",
    ["backup", "--url", "s3:///prefix"],
    {},
    2,
    /s3:\/\/\/prefix names no bucket and BUCKET_NAME is not set/,
  ],
  [
    "prefix with ..",
    ["backup", "--url", "s3://my-bucket/../etc"],
    {},
    2,
    /invalid S3 prefix.*'\.\.'/,
  ],
  ["prefix with //", ["backup", "--url", "s3://my-bucket/a//b"], {}, 2, /invalid S3 prefix/],
  [
    "unknown scheme",
    ["backup", "--url", "gs://my-bucket/x"],
    {},
    2,
    /unsupported store URL scheme.*s3:\/\/BUCKET/,
  ],
  [
    "http URL as store",
    ["backup", "--url", "https://example.com/x"],
    {},
    2,
    /unsupported store URL scheme/,
  ],
  [
    "file URL with host",
    ["backup", "--url", "file://host/dir"],
    {},
    2,
    /invalid file URL.*three slashes/,
  ],
  // #24.2: once taken as a relative directory, or left to fail later against the store
  [
    "file: URL without slashes",
    ["backup", "--url", "file:relative"],
    {},
    2,
    /--url=file:relative is not a store URL.*Use file:\/\/\/ABSOLUTE\/DIR/,
  ],
  [
    "IP address as bucket",
    ["backup", "--url", "s3://192.168.0.1/x"],
    {},
    2,
    /192\.168\.0\.1 .*is an IP address, not a bucket name.*LIFEBOAT_S3_ENDPOINT=http:\/\/192/,
  ],
  [
    "empty URL flag",
    ["backup", "--url", ""],
    { LIFEBOAT_URL: "" },
    2,
    /no store given.*LIFEBOAT_URL/,
  ],
  // durations
  [
    "interval without unit",
    ["watch", "--interval", "5"],
    {},
    2,
    /--interval "5" is not a duration.*30s, 5m or 1h/,
  ],
  ["interval bad unit", ["watch", "--interval", "5x"], {}, 2, /is not a duration/],
  ["negative interval", ["watch", "--interval=-1m"], {}, 2, /is not a duration/],
  [
    "zero interval",
    ["watch", "--interval", "0s"],
    {},
    2,
    /--interval 0s is too short.*at least 1s/,
  ],
  ["sub-second interval", ["watch", "--interval", "500ms"], {}, 2, /too short/],
  [
    "interval from env",
    ["watch"],
    { LIFEBOAT_INTERVAL: "soon" },
    2,
    /LIFEBOAT_INTERVAL "soon" is not a duration/,
  ],
  [
    "shutdown timeout",
    ["watch"],
    { LIFEBOAT_SHUTDOWN_TIMEOUT: "forever" },
    2,
    /LIFEBOAT_SHUTDOWN_TIMEOUT "forever"/,
  ],
  // environment values
  [
    "log format",
    ["backup"],
    { LIFEBOAT_LOG_FORMAT: "xml" },
    2,
    /LIFEBOAT_LOG_FORMAT=xml is not valid.*json, text/,
  ],
  [
    "log level",
    ["backup"],
    { LIFEBOAT_LOG_LEVEL: "loud" },
    2,
    /LIFEBOAT_LOG_LEVEL=loud.*debug, info/,
  ],
  [
    "SSE mode",
    ["backup"],
    { LIFEBOAT_S3_SSE: "rot13" },
    2,
    /LIFEBOAT_S3_SSE=rot13.*AES256, aws:kms, none/,
  ],
  [
    "checksum mode",
    ["backup"],
    { LIFEBOAT_S3_CHECKSUM: "sometimes" },
    2,
    /LIFEBOAT_S3_CHECKSUM=sometimes/,
  ],
  [
    "path style flag",
    ["backup"],
    { LIFEBOAT_S3_FORCE_PATH_STYLE: "maybe" },
    2,
    /LIFEBOAT_S3_FORCE_PATH_STYLE=maybe/,
  ],
  [
    "restore attempts",
    ["restore"],
    { LIFEBOAT_RESTORE_ATTEMPTS: "0" },
    2,
    /LIFEBOAT_RESTORE_ATTEMPTS=0.*1 to 100/,
  ],
  [
    "part size",
    ["backup"],
    { LIFEBOAT_S3_PART_SIZE_MB: "1" },
    2,
    /LIFEBOAT_S3_PART_SIZE_MB=1.*5 to 512/,
  ],
  // #24.2: the SDK used to refuse these with "Region not accepted", exit 1
  [
    "region with a space",
    ["backup"],
    { LIFEBOAT_S3_REGION: "us east" },
    2,
    /LIFEBOAT_S3_REGION "us east" is not a region.*e\.g\. eu-west-1/,
  ],
  [
    "region with a path",
    ["restore"],
    { LIFEBOAT_S3_REGION: "../x" },
    2,
    /LIFEBOAT_S3_REGION "\.\.\/x" is not a region/,
  ],
  [
    "endpoint not a URL",
    ["backup"],
    { AWS_ENDPOINT_URL_S3: "not a url" },
    2,
    /AWS_ENDPOINT_URL_S3 "not a url" is not an http\(s\) URL/,
  ],
  [
    "KMS key without KMS",
    ["backup"],
    { LIFEBOAT_S3_KMS_KEY_ID: "key-1" },
    2,
    /LIFEBOAT_S3_KMS_KEY_ID is set but LIFEBOAT_S3_SSE is not aws:kms/,
  ],
  // paths
  [
    "no database",
    ["backup", "--db", ""],
    { LIFEBOAT_DB: "" },
    2,
    /no database given.*--db PATH or set LIFEBOAT_DB/,
  ],
  [
    "missing database",
    ["backup", "--db", "DIR/missing.db"],
    {},
    2,
    /database .*missing\.db does not exist/,
  ],
  ["database is a directory", ["backup", "--db", "DIR"], {}, 2, /is not a file.*database file/],
  [
    "path under a file",
    ["backup", "--db", "DIR/notes.txt/app.db"],
    {},
    2,
    /notes\.txt is not a directory/,
  ],
  [
    "not a SQLite file",
    ["backup", "--db", "DIR/notes.txt"],
    {},
    2,
    /notes\.txt is not a SQLite database/,
  ],
  ["empty file", ["backup", "--db", "DIR/empty.db"], {}, 2, /empty\.db is not a SQLite database/],
  [
    "truncated SQLite file",
    ["backup", "--db", "DIR/truncated.db"],
    {},
    1,
    /snapshot of .*truncated\.db failed: .*malformed.*Nothing was uploaded/,
  ],
  [
    "damaged SQLite file",
    ["backup", "--db", "DIR/damaged.db"],
    {},
    1,
    /(damaged|malformed).*Nothing was uploaded/,
  ],
  // command line
  ["unknown option", ["backup", "--frobnicate"], {}, 2, /unknown option '--frobnicate'.*--help/],
  ["unknown command", ["frobnicate"], {}, 2, /unknown command 'frobnicate'/],
  ["extra argument", ["backup", "extra"], {}, 2, /too many arguments for 'backup'/],
  ["app not found", ["watch", "--", "/no/such/app"], {}, 2, /command not found: \/no\/such\/app/],
  // credentials
  [
    "malformed role ARN",
    ["backup"],
    { AWS_ROLE_ARN: "arn:aws:iam::12:role/x" },
    2,
    /AWS_ROLE_ARN "arn:aws:iam::12:role\/x" is not an IAM role ARN/,
  ],
  [
    "missing token file",
    ["backup"],
    { ...ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: "DIR/no-token" },
    1,
    /token file .*no-token does not exist/,
  ],
  [
    "empty token file",
    ["backup"],
    { ...ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: "DIR/empty.db" },
    1,
    /token file .*empty\.db is empty/,
  ],
  [
    "token file is a directory",
    ["backup"],
    { ...ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: "DIR" },
    1,
    /token file .* is not a file/,
  ],
  // the store
  [
    "missing bucket",
    ["backup", "--url", "s3://no-such-bucket-here/x"],
    {},
    1,
    /no-such-bucket-here/,
  ],
  [
    "wrong credentials",
    ["backup", "--url", "s3://corpus/x", "--", "DENIED"],
    {},
    1,
    /InvalidAccessKeyId|access key|credentials/i,
  ],
];

Deno.test({
  name: `bad-input corpus: ${CASES.length} cases, one line each, nothing lost`,
  ...LOOSE,
  fn: async (t) => {
    const s3 = await startLocalS3();
    const denied = startS3Proxy(s3.endpoint);
    denied.faults.push({
      match: () => true,
      action: { kind: "status", status: 403, code: "InvalidAccessKeyId" },
    });
    const dir = await tempDir();
    try {
      await s3.createBucket("corpus");
      const db = `${dir}/app.db`;
      makeDb(db, 50);
      growDb(db, 1);
      await Deno.writeTextFile(`${dir}/notes.txt`, "not a database");
      await Deno.writeFile(`${dir}/empty.db`, new Uint8Array());
      const good = await Deno.readFile(db);
      await Deno.writeFile(`${dir}/truncated.db`, good.subarray(0, 20_000));
      const damaged = good.slice();
      damaged.fill(0x47, 4096 * 3, 4096 * 6);
      await Deno.writeFile(`${dir}/damaged.db`, damaged);
      const env = baseEnv({
        ...s3.env,
        LIFEBOAT_DB: db,
        LIFEBOAT_URL: "s3://corpus/x",
        LIFEBOAT_RESTORE_ATTEMPTS: "1",
      });

      for (const [name, rawArgs, extra, code, re] of CASES) {
        await t.step(name, async () => {
          let args = rawArgs.map((a) => a.replaceAll("DIR", dir));
          let caseEnv = Object.fromEntries(
            Object.entries({ ...env, ...extra }).map(([k, v]) => [k, v.replaceAll("DIR", dir)]),
          );
          if (args.at(-1) === "DENIED") {
            args = args.slice(0, -2);
            caseEnv = { ...caseEnv, AWS_ENDPOINT_URL_S3: denied.endpoint };
          }
          const r = await runLifeboat(args, caseEnv);
          assertOneLineError(r, code, re);
        });
      }
      assert.deepEqual(await s3.keys("corpus"), [], "something was written to the store");
      assert.deepEqual(await Deno.readFile(db), good, "the database changed");
    } finally {
      await denied.stop();
      await s3.stop();
    }
  },
});
