/**
 * Every credential and S3 failure a person can act on ends lifeboat with one line naming the fix
 * and the right exit code, and never prints a secret. lifeboat runs as a process against fake
 * STS / S3 servers made here (moto cannot refuse access) and moto for a missing bucket.
 */
import assert from "node:assert/strict";
import { testKey } from "../testkit/backup_files.ts";
import { assertOneLineError, baseEnv, runLifeboat, type RunResult } from "../testkit/cli.ts";
import { type LocalS3, startLocalS3 } from "../testkit/moto.ts";
import { makeDb } from "../testkit/sqlite.ts";
import {
  fakeJwt,
  listResponse,
  s3Error,
  SecretScan,
  serve,
  stsError,
} from "../testkit/aws_fakes.ts";
import { LOOSE, tempDir } from "../testkit/scene.ts";

const ROLE = "arn:aws:iam::123456789012:role/lifeboat-test";
const BUCKET = "errors-bucket";
const scan = new SecretScan();
const KEYS = {
  AWS_ACCESS_KEY_ID: "AKIALIFEBOATERRTEST1",
  AWS_SECRET_ACCESS_KEY: `planted-secret-${crypto.randomUUID()}`,
  AWS_SESSION_TOKEN: `planted-session-${crypto.randomUUID()}`,
};
scan.plant(...Object.values(KEYS));

/** One failing run's working directory and environment. */
interface Case {
  dir: string;
  env: Record<string, string>;
}

/** A working directory with a small database and static test keys, sent to `s3url`. */
async function caseWith(s3url: string, extra: Record<string, string> = {}): Promise<Case> {
  const dir = await tempDir();
  makeDb(`${dir}/app.db`, 10);
  const env = baseEnv({
    ...KEYS,
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL_S3: s3url,
    LIFEBOAT_URL: `s3://${BUCKET}/apps/demo`,
    LIFEBOAT_LOG_LEVEL: "debug",
    ...extra,
  });
  return { dir, env };
}

/** Runs `lifeboat backup` or `restore` (into a fresh path) and records output for the scan. */
async function run(what: string, c: Case, cmd: "backup" | "restore"): Promise<RunResult> {
  const db = cmd === "backup" ? `${c.dir}/app.db` : `${c.dir}/restored.db`;
  return scan.record(what, await runLifeboat([cmd, "--db", db], c.env));
}

/** Asserts a failed run logged exactly one error line (among debug logs) matching `re`. */
function assertOneLine(r: RunResult, code: number, re: RegExp): void {
  assertOneLineError(r, code, re, (l) => / (ERROR|FATAL) /.test(l) || l.startsWith("lifeboat: "));
}

/** A fake S3 that answers `PUT` and `GET` with `onPut`/`onGet`, and lists `keys`. */
function fakeS3(
  o: { onPut?: () => Response; onList?: () => Response; onGet?: () => Response },
) {
  const key = `apps/demo/${testKey(Date.now() - 60_000, "m1")}`;
  return serve(async (req) => {
    await req.body?.cancel();
    const url = new URL(req.url);
    if (req.method === "PUT") return o.onPut?.() ?? new Response(null, { status: 200 });
    if (url.searchParams.get("list-type") === "2") {
      const prefix = url.searchParams.get("prefix") ?? "";
      return o.onList?.() ??
        listResponse(BUCKET, prefix, [key].filter((k) => k.startsWith(prefix)));
    }
    return o.onGet?.() ?? s3Error(404, "NoSuchKey", "The specified key does not exist.");
  });
}

/** A role setup whose STS answers with `sts`; S3 must never be reached. */
async function roleCase(sts: () => Response) {
  const stsServer = serve(async (req) => {
    await req.body?.cancel();
    return sts();
  });
  let s3Requests = 0;
  const s3 = serve(() => (s3Requests++, s3Error(500, "InternalError", "S3 must not be reached")));
  const token = fakeJwt("test-org:test-app:e784079b449483");
  scan.plant(token);
  const c = await caseWith(s3.url, {
    AWS_ACCESS_KEY_ID: "",
    AWS_SECRET_ACCESS_KEY: "",
    AWS_SESSION_TOKEN: "",
    AWS_ROLE_ARN: ROLE,
    AWS_ENDPOINT_URL_STS: stsServer.url,
  });
  c.env.AWS_WEB_IDENTITY_TOKEN_FILE = `${c.dir}/oidc_token`;
  await Deno.writeTextFile(c.env.AWS_WEB_IDENTITY_TOKEN_FILE, token);
  return {
    c,
    stop: async () => {
      await Promise.all([stsServer.stop(), s3.stop()]);
      assert.equal(s3Requests, 0, "S3 was reached without credentials");
    },
  };
}

Deno.test({
  name: "errors a person can act on",
  ...LOOSE,
  fn: async (t) => {
    let moto: LocalS3 | undefined;
    try {
      await t.step("token file missing and no fly.io socket: exit 1", async () => {
        const c = await caseWith("http://127.0.0.1:9", { AWS_ROLE_ARN: ROLE });
        c.env.AWS_WEB_IDENTITY_TOKEN_FILE = `${c.dir}/missing_token`;
        c.env.LIFEBOAT_FLY_API_SOCKET = `${c.dir}/no-api.sock`;
        assertOneLine(
          await run("token file missing", c, "backup"),
          1,
          /the web identity token file \S+missing_token does not exist, and there is no fly\.io machine API socket at \S+no-api\.sock to mint a token\. On fly\.io set AWS_ROLE_ARN/,
        );
      });

      await t.step("token file empty: exit 1", async () => {
        const c = await caseWith("http://127.0.0.1:9", { AWS_ROLE_ARN: ROLE });
        c.env.AWS_WEB_IDENTITY_TOKEN_FILE = `${c.dir}/empty_token`;
        await Deno.writeTextFile(c.env.AWS_WEB_IDENTITY_TOKEN_FILE, "");
        assertOneLine(
          await run("token file empty", c, "restore"),
          1,
          /the web identity token file \S+empty_token is empty\. fly\.io writes it/,
        );
      });

      await t.step("fly.io machine API refusing to mint a token: exit 1", async () => {
        const dir = await tempDir();
        const socket = `${dir}/api.sock`;
        const server = Deno.serve(
          { path: socket, transport: "unix", onListen() {} },
          () => new Response("no oidc for you", { status: 403 }),
        );
        const c = await caseWith("http://127.0.0.1:9", {
          AWS_ROLE_ARN: ROLE,
          AWS_WEB_IDENTITY_TOKEN_FILE: `${dir}/missing`,
          LIFEBOAT_FLY_API_SOCKET: socket,
        });
        try {
          assertOneLine(
            await run("fly api refused", c, "backup"),
            1,
            /the fly\.io machine API at \S+api\.sock refused to mint an OIDC token \(HTTP 403: no oidc for you\)/,
          );
        } finally {
          await server.shutdown();
        }
      });

      await t.step(
        "malformed AWS_ROLE_ARN: exit 2, and a non-ARN value is not echoed",
        async () => {
          const c = await caseWith("http://127.0.0.1:9", {
            AWS_ROLE_ARN: "arn:aws:iam::1234:role/x",
          });
          assertOneLine(
            await run("bad arn", c, "backup"),
            2,
            /AWS_ROLE_ARN "arn:aws:iam::1234:role\/x" is not an IAM role ARN\. Use arn:aws:iam::<12-digit account id>:role\/<name>/,
          );
          const pasted = `pasted-secret-${crypto.randomUUID()}`;
          scan.plant(pasted);
          c.env.AWS_ROLE_ARN = pasted;
          assertOneLine(
            await run("secret as arn", c, "restore"),
            2,
            /AWS_ROLE_ARN is not an IAM role ARN \(it does not start with arn:\)/,
          );
        },
      );

      // STS refusing the role: each answer is one line that says what to fix.
      const stsCases: {
        name: string;
        sts: () => Response;
        what: string;
        cmd: "backup" | "restore";
        re: RegExp;
      }[] = [
        {
          name: "STS AccessDenied names the trust policy and the token's sub",
          sts: () =>
            stsError(
              403,
              "AccessDenied",
              "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            ),
          what: "sts access denied",
          cmd: "backup",
          re:
            /STS denied AssumeRoleWithWebIdentity for arn:aws:iam::123456789012:role\/lifeboat-test \(AccessDenied; the token has sub "test-org:test-app:e784079b449483", aud "sts.amazonaws.com"\)\. Check the role's trust policy/,
        },
        {
          name: "STS rejecting an expired token: exit 1",
          sts: () =>
            stsError(
              400,
              "ExpiredTokenException",
              "Token expired: current date/time 1 must be before the expiration date/time 0",
            ),
          what: "sts expired token",
          cmd: "restore",
          re:
            /STS rejected the web identity token from \S+oidc_token as expired \(ExpiredToken(Exception)?\)\. fly\.io rewrites the token/,
        },
        {
          name: "STS rejecting the token's issuer: exit 1",
          sts: () =>
            stsError(
              400,
              "InvalidIdentityToken",
              "No OpenIDConnect provider found in your account for https://oidc.fly.io/test-org",
            ),
          what: "sts invalid token",
          cmd: "backup",
          re:
            /STS rejected the web identity token .*No OpenIDConnect provider found in your account for https:\/\/oidc\.fly\.io\/test-org\)\. Add https:\/\/oidc\.fly\.io\/<org> as an IAM OIDC identity provider/,
        },
      ];
      for (const k of stsCases) {
        await t.step(k.name, async () => {
          const { c, stop } = await roleCase(k.sts);
          try {
            assertOneLine(await run(k.what, c, k.cmd), 1, k.re);
          } finally {
            await stop();
          }
        });
      }

      await t.step("missing bucket: exit 1 for backup and restore", async () => {
        moto = await startLocalS3();
        const c = await caseWith(moto.endpoint, { ...KEYS });
        assertOneLine(
          await run("no bucket backup", c, "backup"),
          1,
          // A backup first lists the store (its new key must sort after the newest) and reads its
          // manifest, at once: whichever answers first names the missing bucket.
          /S3 bucket "errors-bucket" does not exist \(NoSuchBucket on (ListObjectsV2|GetObject)\)\. Create it/,
        );
        assertOneLine(
          await run("no bucket restore", c, "restore"),
          1,
          /S3 bucket "errors-bucket" does not exist \(NoSuchBucket on (ListObjectsV2|GetObject)\)/,
        );
      });

      const denied = () => s3Error(403, "AccessDenied", "Access Denied");
      const accessCases = [
        { cmd: "backup", o: { onPut: denied }, op: "PutObject", action: "s3:PutObject" },
        { cmd: "restore", o: { onList: denied }, op: "ListObjectsV2", action: "s3:ListBucket" },
        { cmd: "restore", o: { onGet: denied }, op: "GetObject", action: "s3:GetObject" },
      ] as const;
      for (const a of accessCases) {
        await t.step(`AccessDenied on ${a.op} names ${a.action}: exit 1`, async () => {
          const server = fakeS3(a.o);
          try {
            const resource = a.op === "ListObjectsV2"
              ? "arn:aws:s3:::errors-bucket for"
              : "arn:aws:s3:::errors-bucket/apps/demo/\\* for";
            assertOneLine(
              await run(`denied ${a.op}`, await caseWith(server.url), a.cmd),
              1,
              new RegExp(
                `S3 denied ${a.op} on s3://errors-bucket/apps/demo \\(AccessDenied\\): ` +
                  `the ${a.action} permission is missing\\. Allow ${a.action} on ${resource}`,
              ),
            );
          } finally {
            await server.stop();
          }
        });
      }

      await t.step("expired session credentials: exit 1", async () => {
        const server = fakeS3({
          onPut: () => s3Error(400, "ExpiredToken", "The provided token has expired."),
        });
        try {
          assertOneLine(
            await run("s3 expired token", await caseWith(server.url), "backup"),
            1,
            /S3 rejected the credentials as expired \(ExpiredToken on PutObject\)\. Renew AWS_SESSION_TOKEN/,
          );
        } finally {
          await server.stop();
        }
      });

      await t.step("no planted secret appears in any line lifeboat printed", () => {
        const { lines, secrets } = scan.assertClean();
        assert.ok(lines >= 14 && secrets >= 7, `scanned ${lines} lines for ${secrets} secrets`);
      });
    } finally {
      await moto?.stop();
    }
  },
});
