/** Unit tests for role credentials, their renewal, S3/STS error mapping and role configuration. */
import assert from "node:assert/strict";
import { roleOptions, s3Options } from "../src/config.ts";
import { EXIT_FAILURE, EXIT_USAGE, LifeboatError, oneLine } from "../src/errors.ts";
import {
  type Credentials,
  RENEW_BEFORE_MS,
  renewing,
  type RoleAssumer,
  roleCredentials,
  type RoleSettings,
  tokenClaims,
} from "../src/store/s3_credentials.ts";
import { mapS3Error, mapStsError, redact } from "../src/store/s3_errors.ts";
import { fakeJwt, startFakeFlyApi } from "../testkit/aws_fakes.ts";
import { testClock } from "../testkit/clock.ts";
import { tempDir } from "../testkit/scene.ts";

const ROLE = "arn:aws:iam::123456789012:role/lifeboat";
const HOUR = 3_600_000;

/** A clock the test moves by hand. */
const fakeClock = () => testClock(Date.parse("2026-11-28T12:00:00Z"));

/** A fake STS: records each token presented and returns numbered credentials lasting an hour. */
function fakeSts(now: () => number) {
  const tokens: string[] = [];
  const params: Parameters<RoleAssumer>[0][] = [];
  const assume: RoleAssumer = (p) => {
    tokens.push(p.WebIdentityToken);
    params.push(p);
    return Promise.resolve({
      accessKeyId: `ASIAFAKE${tokens.length}`,
      secretAccessKey: `secret-${tokens.length}`,
      sessionToken: `session-${tokens.length}`,
      expiration: new Date(now() + HOUR),
    });
  };
  return { tokens, params, assume };
}

function settings(dir: string, extra: Partial<RoleSettings> = {}): RoleSettings {
  return {
    roleArn: ROLE,
    sessionName: "lifeboat-test",
    tokenFile: `${dir}/oidc_token`,
    flyApiSocket: `${dir}/api.sock`,
    stsRegion: "us-east-1",
    ...extra,
  };
}

function creds(n: number, expiresAt: number): Credentials {
  return { accessKeyId: `AK${n}`, secretAccessKey: `s${n}`, expiration: new Date(expiresAt) };
}

async function rejectsWith(p: Promise<unknown>, code: number, re: RegExp): Promise<void> {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof LifeboatError, `not a LifeboatError: ${err}`);
    assert.equal(err.exitCode, code);
    assert.match(oneLine(err), re);
    return true;
  });
}

Deno.test("renewing: reuses credentials until 5 minutes before they expire", async () => {
  const clock = fakeClock();
  let n = 0;
  const p = renewing(() => Promise.resolve(creds(++n, clock.now() + HOUR)), clock.now);
  assert.equal(p.memoized, true, "the SDK must not wrap it in its own cache");
  assert.equal((await p()).accessKeyId, "AK1");
  clock.advance(HOUR - RENEW_BEFORE_MS - 1000);
  assert.equal((await p()).accessKeyId, "AK1");
  clock.advance(2000);
  assert.equal((await p()).accessKeyId, "AK2");
  assert.equal((await p({ forceRefresh: true })).accessKeyId, "AK3");
  // Credentials without an expiry never need renewing.
  const forever = renewing(() => Promise.resolve({ accessKeyId: `X${++n}`, secretAccessKey: "s" }));
  const first = (await forever()).accessKeyId;
  assert.equal((await forever()).accessKeyId, first);
});

Deno.test("renewing: concurrent callers share one fetch", async () => {
  let calls = 0;
  const p = renewing(async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 10));
    return creds(calls, Date.now() + HOUR);
  });
  const all = await Promise.all([p(), p(), p()]);
  assert.equal(calls, 1);
  assert.ok(all.every((c) => c === all[0]));
});

Deno.test("renewing: a failed renewal falls back to credentials that still work", async () => {
  const clock = fakeClock();
  let fail = false;
  let n = 0;
  const p = renewing(() => {
    if (fail) return Promise.reject(new Error("STS unreachable"));
    return Promise.resolve(creds(++n, clock.now() + HOUR));
  }, clock.now);
  await p();
  fail = true;
  clock.advance(HOUR - 2 * 60_000); // in the renewal window, 2 minutes left
  assert.equal((await p()).accessKeyId, "AK1");
  clock.advance(2 * 60_000 - 10_000); // 10 s left: too close, the error surfaces
  await assert.rejects(p(), /STS unreachable/);
  fail = false;
  assert.equal((await p()).accessKeyId, "AK2");
});

Deno.test("role credentials: every renewal reads the token file again", async () => {
  const dir = await tempDir();
  const clock = fakeClock();
  const sts = fakeSts(clock.now);
  const [a, b] = [fakeJwt("o:a:1"), fakeJwt("o:a:2")];
  await Deno.writeTextFile(`${dir}/oidc_token`, a);
  const p = roleCredentials(settings(dir), { now: clock.now, assume: sts.assume });
  assert.equal((await p()).accessKeyId, "ASIAFAKE1");
  await Deno.writeTextFile(`${dir}/oidc_token`, b); // fly rewrote the file
  assert.equal((await p()).accessKeyId, "ASIAFAKE1", "still cached");
  clock.advance(HOUR - RENEW_BEFORE_MS + 1);
  assert.equal((await p()).accessKeyId, "ASIAFAKE2");
  assert.deepEqual(sts.tokens, [a, b]);
  assert.deepEqual(sts.params.map((x) => [x.RoleArn, x.RoleSessionName]), [
    [ROLE, "lifeboat-test"],
    [ROLE, "lifeboat-test"],
  ]);
});

Deno.test("role credentials: without the token file, each renewal mints a token over fly's API", async () => {
  const dir = await tempDir();
  const fly = startFakeFlyApi(`${dir}/api.sock`);
  try {
    const clock = fakeClock();
    const sts = fakeSts(clock.now);
    const p = roleCredentials(settings(dir), { now: clock.now, assume: sts.assume });
    await p();
    clock.advance(HOUR);
    await p();
    assert.equal(fly.minted.length, 2);
    assert.deepEqual(sts.tokens, fly.minted);
    assert.deepEqual(fly.requests[0].body, { aud: "sts.amazonaws.com" });
  } finally {
    await fly.stop();
  }
});

Deno.test("role credentials: a missing or empty token file is a one-line error (exit 1)", async () => {
  const dir = await tempDir();
  const sts = fakeSts(Date.now);
  const p = roleCredentials(settings(dir), { assume: sts.assume });
  await rejectsWith(p(), EXIT_FAILURE, /token file \S+oidc_token does not exist, and there is no/);
  await Deno.writeTextFile(`${dir}/oidc_token`, "");
  await rejectsWith(p(), EXIT_FAILURE, /token file \S+oidc_token is empty/);
  assert.equal(sts.tokens.length, 0);
});

Deno.test("role credentials: STS AccessDenied names the token's sub, never the token", async () => {
  const dir = await tempDir();
  const token = fakeJwt("my-org:my-app:abc");
  await Deno.writeTextFile(`${dir}/oidc_token`, token);
  const p = roleCredentials(settings(dir), {
    assume: () =>
      Promise.reject(Object.assign(new Error(`denied ${token}`), { name: "AccessDenied" })),
  });
  await rejectsWith(
    p(),
    EXIT_FAILURE,
    /AccessDenied; the token has sub "my-org:my-app:abc".*trust policy/,
  );
  // A second call fails the same way; its message must not hold the token's signature.
  const err = await p().then(
    () => assert.fail("the credentials call succeeded"),
    (e: unknown) => e,
  );
  assert.ok(!oneLine(err).includes(token.split(".")[2]));
});

Deno.test("tokenClaims reads sub, aud and iss, and nothing from a non-JWT", () => {
  const c = tokenClaims(fakeJwt("o:a:m", "sts.amazonaws.com"));
  assert.deepEqual(c, {
    sub: "o:a:m",
    aud: "sts.amazonaws.com",
    iss: "https://oidc.fly.io/test-org",
  });
  assert.deepEqual(tokenClaims("not a token"), {});
});

Deno.test("error mapping: permanent failures become LifeboatErrors, transient ones stay retryable", () => {
  const ctx = { op: "PutObject", bucket: "b-1", prefix: "p" } as const;
  const err = (name: string, status = 400) =>
    Object.assign(new Error(name), { name, $metadata: { httpStatusCode: status } });
  for (const code of ["NoSuchBucket", "AccessDenied", "ExpiredToken", "InvalidAccessKeyId"]) {
    assert.ok(mapS3Error(err(code), ctx) instanceof LifeboatError, code);
  }
  for (const code of ["SlowDown", "InternalError", "RequestTimeout", "AbortError"]) {
    const e = err(code, 503);
    const mapped = mapS3Error(e, ctx);
    assert.ok(!(mapped instanceof LifeboatError), `${code} must stay retryable`);
    assert.equal((mapped as Error).cause, e, code);
  }
  const unknown = err("NoSuchKey", 404);
  assert.equal(mapS3Error(unknown, ctx), unknown);
  const kms = Object.assign(err("AccessDenied", 403), {
    message: "User: arn:aws:sts::123456789012:assumed-role/r/s is not authorized to perform: " +
      "kms:GenerateDataKey on resource: arn:aws:kms:eu-west-1:123456789012:key/k",
  });
  assert.match(
    oneLine(mapS3Error(kms, ctx)),
    /the kms:GenerateDataKey permission is missing\. Allow kms:GenerateDataKey on the bucket's KMS key/,
  );
  const net = new TypeError("error sending request: connection refused");
  assert.equal(mapS3Error(net, ctx), net);
  const sts = { roleArn: ROLE, tokenSource: "/t" };
  assert.ok(mapStsError(err("InvalidIdentityTokenException"), sts) instanceof LifeboatError);
  const idp = err("IDPCommunicationErrorException");
  assert.equal(mapStsError(idp, sts), idp);
});

Deno.test("redact removes tokens and key ids from server text", () => {
  const jwt = fakeJwt();
  const out = redact(`bad token ${jwt} for AKIAABCDEFGHIJKLMNOP and ${"x".repeat(50)}`);
  assert.ok(!out.includes(jwt.split(".")[2]) && !out.includes("AKIAABCD") && !out.includes("xxxx"));
});

Deno.test("role config: fly.io defaults, overrides, and exit 2 for malformed values", () => {
  const base = { AWS_ROLE_ARN: ROLE, FLY_MACHINE_ID: "e784079b449483", AWS_REGION: "eu-west-1" };
  assert.deepEqual(roleOptions(base, "eu-west-1"), {
    roleArn: ROLE,
    sessionName: "lifeboat-e784079b449483",
    tokenFile: "/.fly/oidc_token",
    flyApiSocket: "/.fly/api",
    stsRegion: "eu-west-1",
    stsEndpoint: undefined,
  });
  assert.equal(roleOptions({}, "us-east-1"), undefined);
  assert.equal("role" in s3Options({}), false);
  assert.equal(s3Options(base).role?.roleArn, ROLE);
  const tigris = s3Options({
    ...base,
    AWS_REGION: "auto",
    AWS_ENDPOINT_URL_S3: "https://fly.storage.tigris.dev",
  }).role!;
  assert.equal(tigris.stsRegion, "us-east-1");
  const custom = roleOptions({
    ...base,
    AWS_ROLE_ARN: "arn:aws-us-gov:iam::123456789012:role/path/to/r",
    AWS_ROLE_SESSION_NAME: "my-session",
    AWS_WEB_IDENTITY_TOKEN_FILE: "/run/token",
    AWS_ENDPOINT_URL_STS: "http://127.0.0.1:1234/",
    LIFEBOAT_FLY_API_SOCKET: "/tmp/api.sock",
  }, "us-east-1")!;
  assert.equal(custom.sessionName, "my-session");
  assert.equal(custom.tokenFile, "/run/token");
  assert.equal(custom.stsEndpoint, "http://127.0.0.1:1234");
  assert.equal(custom.flyApiSocket, "/tmp/api.sock");
  const named = roleOptions({ AWS_ROLE_ARN: ROLE, FLY_MACHINE_ID: "a b/c" }, "us-east-1")!;
  assert.equal(named.sessionName, "lifeboat-a-b-c");

  const bad = (env: Record<string, string>, re: RegExp) =>
    assert.throws(() => roleOptions({ ...base, ...env }, "us-east-1"), (err) => {
      assert.ok(err instanceof LifeboatError);
      assert.equal(err.exitCode, EXIT_USAGE);
      assert.match(oneLine(err), re);
      return true;
    });
  bad(
    { AWS_ROLE_ARN: "arn:aws:iam::123:role/x" },
    /AWS_ROLE_ARN "arn:aws:iam::123:role\/x" is not/,
  );
  bad({ AWS_ROLE_ARN: "arn:aws:s3:::bucket" }, /is not an IAM role ARN/);
  bad(
    { AWS_ROLE_ARN: "wJalrXUtnFEMI/K7MDENG" },
    /^AWS_ROLE_ARN is not an IAM role ARN \(it does not/,
  );
  bad({ AWS_ROLE_SESSION_NAME: "has space" }, /AWS_ROLE_SESSION_NAME "has space" is not valid/);
  bad(
    { AWS_ENDPOINT_URL_STS: "sts.local" },
    /AWS_ENDPOINT_URL_STS "sts.local" is not an http\(s\) URL/,
  );
});
