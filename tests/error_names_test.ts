/**
 * Issue #24.3: every S3 or store failure names the request that failed and its cause, never the
 * SDK's raw names: a HEAD answer (no body, so no code) by its status, the parts of a multipart
 * upload as UploadPart, a connection reset apart from a timeout, an endpoint where nothing
 * listens, a directory store whose path is a file.
 */
import assert from "node:assert/strict";
import { isRetryable, oneLine } from "../src/errors.ts";
import { readDbHistory } from "../src/store/history.ts";
import { mapS3Error, type S3ErrorContext } from "../src/store/s3_errors.ts";
import type { Store } from "../src/store/store.ts";
import { runLifeboat } from "../testkit/cli.ts";
import { is, startResettingLink } from "../testkit/s3_proxy.ts";
import { proxiedTest, scene, tempDir } from "../testkit/scene.ts";
import { growDb, makeDb } from "../testkit/sqlite.ts";

/** A scene's run: lifeboat's last line (the error), its exit code, and no raw error name. */
async function lastLine(args: string[], env: Record<string, string>, code = 1): Promise<string> {
  const r = await runLifeboat(args, env);
  assert.equal(r.code, code, r.stderr);
  const last = r.lines.at(-1) ?? "";
  assert.doesNotMatch(last, /(Unknown|NotFound|NotADirectory|Error): .*(UnknownError|os error)/);
  return last;
}

proxiedTest(
  "#24.3 errors name the operation and the cause: HEAD 404 or denied, every UploadPart reset, nothing listening, a store path that is a file",
  async (t, { s3, proxy }) => {
    // A database of three 5 MiB parts, for the multipart cases.
    const bigEnv = { LIFEBOAT_S3_PART_SIZE_MB: "5", LIFEBOAT_S3_MAX_ATTEMPTS: "1" };
    const big = `${await tempDir()}/big.db`;
    makeDb(big, 5);
    growDb(big, 11);
    await t.step("a HEAD answering 404 after every PUT names the object", async () => {
      const s = await scene({ s3, proxy });
      makeDb(s.db, 5);
      proxy.faults.push({ match: is.head, action: { kind: "status", status: 404, code: "x" } });
      assert.match(
        await lastLine(["backup", "--db", s.db], s.env),
        /S3 has no s3:\/\/\S+\/db\/backups\/\S+\.sqlite3 \(HeadObject answered 404 NotFound\)\. lifeboat tries again/,
      );
      // Its three uploads did land: `list --sha256` HEADs them, and is denied.
      proxy.reset();
      proxy.faults.push({ match: is.head, action: { kind: "status", status: 403, code: "x" } });
      assert.match(
        await lastLine(["list", "--sha256", "--db", s.db], s.env),
        /S3 denied HeadObject on s3:\/\/\S+\/db \(AccessDenied\): the s3:GetObject permission is missing\. Allow s3:GetObject on arn:aws:s3:::\S+\/db\/\*/,
      );
    });
    await t.step("every part cut by a connection reset: a reset, not a timeout", async () => {
      const link = startResettingLink(s3.endpoint, /[?&]partNumber=/);
      try {
        const s = await scene({ s3, env: { ...bigEnv, AWS_ENDPOINT_URL_S3: link.endpoint } });
        const last = await lastLine(["backup", "--db", big], s.env);
        assert.match(
          last,
          /S3 UploadPart to s3:\/\/\S+\/db failed: the connection was reset by the S3 endpoint \(ECONNRESET\)\. lifeboat retries it; .*cuts connections/,
        );
        assert.doesNotMatch(last, /LIFEBOAT_S3_TIMEOUT/);
        assert.ok(link.resets >= 3, `${link.resets} resets`);
      } finally {
        await link.stop();
      }
    });
    await t.step("nothing listening at the endpoint: a hint naming the variables", async () => {
      const s = await scene({
        s3,
        env: { AWS_ENDPOINT_URL_S3: "http://127.0.0.1:1", LIFEBOAT_S3_MAX_ATTEMPTS: "1" },
        restoreAttempts: 1,
      });
      assert.match(
        await lastLine(["restore", "--db", s.db], s.env),
        /S3 ListObjectsV2 to s3:\/\/\S+\/db failed: nothing listens at 127\.0\.0\.1:1 \(ECONNREFUSED\)\. Check LIFEBOAT_S3_ENDPOINT \(or AWS_ENDPOINT_URL_S3\): no server accepts connections at that address and port/,
      );
    });
    await t.step("a directory store whose path is a file", async () => {
      const s = await scene();
      makeDb(s.db, 5);
      const env = { ...s.env, LIFEBOAT_URL: `${s.dir}/notes.txt`, LIFEBOAT_RESTORE_ATTEMPTS: "1" };
      await Deno.writeTextFile(`${s.dir}/notes.txt`, "not a store\n");
      // (Restore retried the OS error 5 times; backup and list read the store the same way.)
      assert.match(
        await lastLine(["restore", "--force", "--db", s.db], env),
        /the store \S+\/notes\.txt is not a directory\. Point --url \/ LIFEBOAT_URL at a directory, not a file/,
      );
    });
  },
);

Deno.test("#24.3 a reset is not a timeout; multipart requests and bodiless answers are named", () => {
  const ctx = { op: "UploadPart", bucket: "b", prefix: "app" } as const;
  const err = (name: string, message: string, extra: Record<string, unknown> = {}) =>
    Object.assign(new Error(message), { name, ...extra });
  const line = (e: unknown, c: S3ErrorContext = ctx) => oneLine(mapS3Error(e, c));
  // The SDK names both TimeoutError; only the system's code tells them apart.
  assert.match(
    line(err("TimeoutError", "socket hang up", { code: "ECONNRESET" })),
    /^S3 UploadPart to s3:\/\/b\/app failed: the connection was reset by the S3 endpoint \(ECONNRESET\)/,
  );
  assert.match(line(err("Error", "write EPIPE", { code: "EPIPE" })), /was reset .*\(EPIPE\)/);
  const timeout = err("TimeoutError", "a request has exceeded the configured 30000 ms", {
    code: "ETIMEDOUT",
  });
  assert.match(line(timeout), /^S3 UploadPart on s3:\/\/b\/app was aborted: no answer within/);
  assert.match(
    line(err("Error", "getaddrinfo ENOTFOUND s3.example.invalid", { code: "ENOTFOUND" })),
    /failed: the host name does not resolve: s3\.example\.invalid \(ENOTFOUND\)\. Check LIFEBOAT_S3_ENDPOINT/,
  );
  for (const op of ["CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"] as const) {
    assert.match(
      line(err("AccessDenied", "Access Denied"), { ...ctx, op }),
      new RegExp(`^S3 denied ${op} on s3://b/app \\(AccessDenied\\): the s3:PutObject permission`),
    );
  }
  // A HEAD answer has no body: its status is all there is.
  const bodiless = (status: number, name: string) =>
    err(name, "UnknownError", { $metadata: { httpStatusCode: status } });
  const head = { ...ctx, op: "HeadObject", key: "app/backups/k.sqlite3" } as const;
  const unavailable = mapS3Error(bodiless(503, "Unknown"), head);
  assert.ok(isRetryable(unavailable));
  assert.match(
    oneLine(unavailable),
    /^the S3 server failed on HeadObject to s3:\/\/b\/app \(ServiceUnavailable\)\./,
  );
  assert.match(
    line(bodiless(400, "BadRequest"), head),
    /^S3 answered HeadObject on s3:\/\/b\/app with HTTP 400 and no explanation \(BadRequest\)\. A HEAD answer has no body/,
  );
  assert.match(
    line(bodiless(404, "NotFound"), head),
    /^S3 has no s3:\/\/b\/app\/backups\/k\.sqlite3 \(HeadObject answered 404 NotFound\)/,
  );
  // radosgw's error bodies carry a <Code> but no <Message>: the SDK's message is "UnknownError"
  // then too, and the code is what counts (CI's compat run failed on this).
  const coded = (status: number, code: string) =>
    err(code, "UnknownError", { Code: code, $metadata: { httpStatusCode: status } });
  assert.match(line(coded(404, "NoSuchBucket")), /^S3 bucket "b" does not exist/);
  assert.match(line(coded(403, "InvalidAccessKeyId")), /^S3 rejected the credentials/);
  assert.ok(isRetryable(mapS3Error(coded(400, "BadDigest"), { ...ctx, op: "PutObject" })));
});

Deno.test("#24.3 a listing's explained error wins over a HEAD's bodiless one, whichever answers first", async () => {
  const explained = new Error("S3 rejected the credentials (InvalidAccessKeyId on ListObjectsV2)");
  const bodiless = new Error("S3 denied HeadObject (AccessDenied)");
  const store = {
    list: () => new Promise((_, reject) => setTimeout(() => reject(explained), 20)),
    readSmall: () => Promise.resolve(undefined),
    describe: () => Promise.reject(bodiless),
  } as unknown as Store;
  await assert.rejects(readDbHistory(store, "app"), (e) => e === explained);
});
