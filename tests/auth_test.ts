/**
 * Authentication end to end, lifeboat run as a process: an IAM role assumed with a fly.io-style
 * OIDC token (token file, renewal during `watch`, the /.fly/api socket fallback) against moto's
 * STS and S3, seen through a recording proxy; and the default chain without a role.
 */
import assert from "node:assert/strict";
import { baseEnv, runLifeboat, spawnLifeboat } from "../testkit/cli.ts";
import { type LocalS3, startLocalS3 } from "../testkit/moto.ts";
import { addRow, makeDb, readRows } from "../testkit/sqlite.ts";
import {
  fakeJwt,
  type RecordingProxy,
  SecretScan,
  startFakeFlyApi,
  startRecordingProxy,
} from "../testkit/aws_fakes.ts";
import { LOOSE, scene as kitScene } from "../testkit/scene.ts";

const ROLE = "arn:aws:iam::123456789012:role/lifeboat-test";
const scan = new SecretScan();
let s3: LocalS3;

/** A bucket, a working directory and a recording proxy in front of moto for one test. */
async function scene(expiresInMs?: number) {
  const { bucket, dir, url } = await kitScene({ s3, name: "auth-test", prefix: "apps/demo" });
  const proxy = startRecordingProxy(s3.endpoint, expiresInMs);
  // No AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: only the role can sign.
  const env = baseEnv({
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL_S3: proxy.url,
    AWS_ENDPOINT_URL_STS: proxy.url,
    AWS_ROLE_ARN: ROLE,
    FLY_MACHINE_ID: "e784079b449483",
    LIFEBOAT_URL: url,
    LIFEBOAT_LOG_LEVEL: "debug",
  });
  return { bucket, dir, proxy, env };
}

/** Runs lifeboat and records its output for the secret scan. */
async function run(what: string, args: string[], env: Record<string, string>) {
  return scan.record(what, await runLifeboat(args, env));
}

/** Asserts every S3 request was signed with credentials STS handed out, never the test keys. */
function assertSignedByRole(proxy: RecordingProxy): void {
  assert.ok(proxy.s3.length > 0, "no S3 request was seen");
  const issued = new Map(proxy.sts.map((c) => [c.accessKeyId, c.sessionToken]));
  for (const r of proxy.s3) {
    assert.ok(issued.has(r.accessKeyId), `${r.method} ${r.path} signed by ${r.accessKeyId}`);
    assert.equal(r.sessionToken, issued.get(r.accessKeyId), "session token of another key");
  }
  for (const c of proxy.sts) scan.plant(c.token, c.secretAccessKey, c.sessionToken, c.accessKeyId);
}

Deno.test({
  name: "auth",
  ...LOOSE,
  fn: async (t) => {
    s3 = await startLocalS3();
    try {
      await t.step("a role from a token file signs backup and restore", async () => {
        const { dir, proxy, env } = await scene();
        const token = fakeJwt();
        scan.plant(token);
        await Deno.writeTextFile(`${dir}/oidc_token`, token);
        const roleEnv: Record<string, string> = {
          ...env,
          AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/oidc_token`,
        };
        assert.ok(!Object.keys(roleEnv).some((k) => /^AWS_(ACCESS_KEY|SECRET|SESSION)/.test(k)));
        makeDb(`${dir}/app.db`, 200);
        try {
          const b = await run("backup", ["backup", "--db", `${dir}/app.db`], roleEnv);
          assert.equal(b.code, 0, b.stderr);
          assert.match(
            b.stderr,
            /assumed role arn:aws:iam::123456789012:role\/lifeboat-test as session lifeboat-e784079b449483/,
          );
          const r = await run("restore", ["restore", "--db", `${dir}/new/app.db`], roleEnv);
          assert.equal(r.code, 0, r.stderr);
          assert.deepEqual(readRows(`${dir}/new/app.db`), readRows(`${dir}/app.db`));

          assert.equal(proxy.sts.length, 2, "one AssumeRoleWithWebIdentity per process");
          for (const c of proxy.sts) {
            assert.equal(c.token, token);
            assert.equal(c.roleArn, ROLE);
            assert.equal(c.sessionName, "lifeboat-e784079b449483");
            assert.match(c.accessKeyId, /^ASIA/);
          }
          assert.ok(proxy.s3.some((r) => r.method === "PUT"), "no upload seen");
          assert.ok(proxy.s3.some((r) => r.method === "GET"), "no download seen");
          assertSignedByRole(proxy);
        } finally {
          await proxy.stop();
        }
      });

      await t.step("watch renews credentials with the token file's new token", async () => {
        // STS answers are rewritten to expire in 5 min + 2 s: lifeboat must renew ~2 s later.
        const { dir, proxy, env } = await scene(5 * 60_000 + 2_000);
        const [first, second] = [
          fakeJwt("test-org:test-app:one"),
          fakeJwt("test-org:test-app:two"),
        ];
        scan.plant(first, second);
        await Deno.writeTextFile(`${dir}/oidc_token`, first);
        makeDb(`${dir}/app.db`, 50);
        const roleEnv = {
          ...env,
          AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/oidc_token`,
          LIFEBOAT_INTERVAL: "1s",
          // This step counts STS calls from the first backup on: a restore drill's GET right
          // after it would renew early when the backup took over 2 s (a loaded machine).
          LIFEBOAT_DRILL_INTERVAL: "0",
        };
        const w = spawnLifeboat(["watch", "--db", `${dir}/app.db`], roleEnv);
        try {
          await w.waitForLine(/backup finished/, 30_000);
          assert.deepEqual(proxy.sts.map((c) => c.token), [first]);
          // fly rewrites the file in place; lifeboat must read it again at the next renewal.
          await Deno.writeTextFile(`${dir}/oidc_token`, second);
          const deadline = Date.now() + 30_000;
          while (!proxy.sts.some((c) => c.token === second)) {
            assert.ok(Date.now() < deadline, `second token never shown to STS:\n${w.lines}`);
            addRow(`${dir}/app.db`, `row-${Date.now()}`); // so each tick uploads
            await new Promise((r) => setTimeout(r, 300));
          }
          // Each round of backups runs in a job process that assumes the role with the token
          // the file holds then: some S3 request must be signed with keys the second token got.
          const renewed = () =>
            new Set(proxy.sts.filter((c) => c.token === second).map((c) => c.accessKeyId));
          while (!proxy.s3.some((r) => renewed().has(r.accessKeyId))) {
            assert.ok(Date.now() < deadline, "renewed credentials never used");
            addRow(`${dir}/app.db`, `row-${Date.now()}`);
            await new Promise((r) => setTimeout(r, 300));
          }
          // One info line says how the run reaches its store, not one per interval.
          const infos = w.lines.filter((l) => /INFO .*assumed role/.test(l));
          assert.ok(infos.length <= 1, infos.join("\n"));
        } finally {
          const res = scan.record("watch", await w.stop());
          await proxy.stop();
          assert.equal(res.code, 0, res.stderr);
        }
        assert.equal(proxy.sts[0].token, first);
        assert.ok(proxy.sts.slice(1).every((c) => c.token === first || c.token === second));
        assertSignedByRole(proxy);
      });

      await t.step("without a token file, a token is minted over fly's machine API", async () => {
        const { dir, proxy, env } = await scene();
        const socket = `${dir}/api.sock`;
        const fly = startFakeFlyApi(socket);
        const flyEnv = {
          ...env,
          AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/no-such-token`,
          LIFEBOAT_FLY_API_SOCKET: socket,
        };
        makeDb(`${dir}/app.db`, 20);
        try {
          const b = await run("backup (fly api)", ["backup", "--db", `${dir}/app.db`], flyEnv);
          assert.equal(b.code, 0, b.stderr);
          assert.match(b.stderr, /with the token from the fly\.io machine API at .*api\.sock/);
          const r = await run("restore (fly api)", ["restore", "--db", `${dir}/b.db=app`], flyEnv);
          assert.equal(r.code, 0, r.stderr);
        } finally {
          await fly.stop();
          await proxy.stop();
        }
        scan.plant(...fly.minted);
        assert.equal(fly.minted.length, 2);
        assert.notEqual(fly.minted[0], fly.minted[1]);
        for (const req of fly.requests) {
          assert.deepEqual(req, {
            method: "POST",
            path: "/v1/tokens/oidc",
            body: { aud: "sts.amazonaws.com" },
          });
        }
        assert.deepEqual(proxy.sts.map((c) => c.token), fly.minted);
        assertSignedByRole(proxy);
      });

      await t.step("without a role, the default chain's keys sign requests", async () => {
        const { dir, proxy, env } = await scene();
        const keys = {
          AWS_ROLE_ARN: "",
          AWS_ACCESS_KEY_ID: "AKIALIFEBOATTEST0001",
          AWS_SECRET_ACCESS_KEY: `planted-secret-${crypto.randomUUID()}`,
        };
        scan.plant(keys.AWS_ACCESS_KEY_ID, keys.AWS_SECRET_ACCESS_KEY);
        makeDb(`${dir}/app.db`, 20);
        try {
          const b = await run("backup (keys)", ["backup", "--db", `${dir}/app.db`], {
            ...env,
            ...keys,
          });
          assert.equal(b.code, 0, b.stderr);
        } finally {
          await proxy.stop();
        }
        assert.equal(proxy.sts.length, 0);
        assert.ok(proxy.s3.length > 0);
        for (const r of proxy.s3) assert.equal(r.accessKeyId, keys.AWS_ACCESS_KEY_ID);
      });

      await t.step("no planted secret appears in any line lifeboat printed", () => {
        const { lines, secrets } = scan.assertClean();
        assert.ok(lines > 10 && secrets >= 10, `scanned ${lines} lines for ${secrets} secrets`);
      });
    } finally {
      await s3.stop();
    }
  },
});
