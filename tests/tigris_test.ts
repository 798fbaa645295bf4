/**
 * Tigris (#23.4): what `fly storage create` sets (no region) is a working setup, region `auto`;
 * every request to a Tigris endpoint carries `X-Tigris-Consistent: true`, so a restore in another
 * region than the writer's reads the newest backup (Tigris's default global buckets are only
 * eventually consistent across regions without it). The header is checked where it arrives: at
 * the test proxy in front of moto.
 */
import assert from "node:assert/strict";
import { loadConfig, s3Options } from "../src/config.ts";
import { s3Settings } from "../src/store/open.ts";
import { S3Store } from "../src/store/s3.ts";
import { isTigrisEndpoint, TIGRIS_CONSISTENT } from "../src/store/tigris.ts";
import { MARKER_NAME } from "../src/store/keys.ts";
import { metaFor, randomFile, TEST_DIR, testKey } from "../testkit/backup_files.ts";
import { proxiedTest, tempDir } from "../testkit/scene.ts";

/** The secrets `fly storage create` sets today (fly.io and Tigris docs): no AWS_REGION. */
const FLY_STORAGE_CREATE = {
  AWS_ACCESS_KEY_ID: "tid_x",
  AWS_SECRET_ACCESS_KEY: "tsec_x",
  AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev",
  BUCKET_NAME: "my-app-bucket",
};

Deno.test("Tigris: fly storage create's four secrets are a working setup: region auto, global consistency asked for", () => {
  const cfg = loadConfig({ db: "/data/db.sqlite3" }, {
    ...FLY_STORAGE_CREATE,
    LIFEBOAT_URL: "s3:///backups",
  });
  assert.deepEqual(cfg.store, { kind: "s3", bucket: "my-app-bucket", prefix: "backups" });
  assert.equal(cfg.s3.region, "auto");
  assert.equal(cfg.s3.globalConsistency, true);
  for (const tigris of ["https://fly.storage.tigris.dev", "https://t3.storage.dev"]) {
    assert.ok(isTigrisEndpoint(tigris), tigris);
    assert.equal(s3Options({ LIFEBOAT_S3_ENDPOINT: tigris }).region, "auto");
  }
  // A region given wins; other stores get neither.
  assert.equal(s3Options({ ...FLY_STORAGE_CREATE, AWS_REGION: "iad" }).region, "iad");
  for (
    const other of [
      {},
      { AWS_ENDPOINT_URL_S3: "https://0123abc.r2.cloudflarestorage.com" },
      { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000" },
      { AWS_ENDPOINT_URL_S3: "https://storage.dev.example.com" },
    ]
  ) {
    const s3 = s3Options(other);
    assert.equal(s3.globalConsistency, undefined, JSON.stringify(other));
    assert.equal(s3.region, "us-east-1");
  }
});

proxiedTest(
  "Tigris: every request of a backup and a restore carries X-Tigris-Consistent: true",
  async (_t, { s3, proxy }) => {
    const dir = await tempDir();
    await s3.createBucket("tigris");
    const file = await randomFile(dir, 64 * 1024);
    const url = { kind: "s3", bucket: "tigris", prefix: "app" } as const;
    const env = {
      ...s3.env,
      AWS_ENDPOINT_URL_S3: proxy.endpoint,
      LIFEBOAT_ACCESS_KEY_ID: s3.env.AWS_ACCESS_KEY_ID,
      LIFEBOAT_SECRET_ACCESS_KEY: s3.env.AWS_SECRET_ACCESS_KEY,
    };
    for (const consistent of [true, false]) {
      proxy.reset();
      const store = new S3Store(
        s3Settings(url, { ...s3Options(env), ...(consistent ? { globalConsistency: true } : {}) }),
      );
      await store.put(testKey(Date.now(), "m1"), file.path, metaFor(file.bytes));
      const [newest] = (await store.list(TEST_DIR, 1)).backups;
      await store.download(newest.key, `${dir}/restored-${consistent}.db`);
      await store.readSmall(MARKER_NAME);
      const seen = proxy.requests.map((r) => [r.op, r.headers.get(TIGRIS_CONSISTENT)]);
      const ops = new Set(seen.map(([op]) => op));
      for (const op of ["PutObject", "HeadObject", "ListObjectsV2", "GetObject"]) {
        assert.ok(ops.has(op), `${op} was sent: ${JSON.stringify(seen)}`);
      }
      for (const [op, header] of seen) {
        assert.equal(header, consistent ? "true" : null, `${op}: ${JSON.stringify(seen)}`);
      }
    }
  },
);
