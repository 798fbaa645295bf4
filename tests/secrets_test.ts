/**
 * Issue #24.1: a secret a server echoes back in another encoding (URL-encoded, base64,
 * JSON-escaped) is never printed, by any command, in either log format; and nothing a store
 * answers (an ESC, a CSI) reaches the terminal raw.
 */
import assert from "node:assert/strict";
import { addSecret, redactLine } from "../src/redact.ts";
import { s3Error, secretEncodings, SecretScan, serve } from "../testkit/aws_fakes.ts";
import { baseEnv, runLifeboat, type RunResult } from "../testkit/cli.ts";
import { makeDb } from "../testkit/sqlite.ts";
import { LOOSE, tempDir } from "../testkit/scene.ts";

/** A session token as STS makes them: long, base64 with `/`, `+` and padding. */
const SESSION_TOKEN = "FwoGZXIvYXdzEJr//////////wEaDO" +
  btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(300)))) + "Xz==";
/** A secret key with the characters RFC 3986 encodes and encodeURIComponent does not. */
const SECRET_KEY = `wJalr/XUtn+FEMI!K7MDENG(bPxRfi)CY*EXAMPLE'${crypto.randomUUID()}`;
/** A raw ESC sequence (clear the screen, turn text red) in a store's answer. */
const ESC = "\u001b[2J\u001b[31m";

/** The server's message: both secrets in every encoding, and raw escape sequences. */
function echo(): string {
  const forms = [SESSION_TOKEN, SECRET_KEY].flatMap(secretEncodings);
  return `${ESC}echo: ${forms.join(" ; ")} \u009b1m`;
}

/**
 * A fake S3 that fails with `echo()`: the ListObjectsV2 of the store's root (0.1's place, which
 * restore and list read once per attempt, among other places) under a prefix starting `list-`,
 * every PutObject elsewhere (it lists nothing else). Each prefix's failures alternate between a code
 * lifeboat does not know (printed as the SDK's raw error) and InternalError (mapped and
 * shortened), starting with the raw one for a prefix ending in `-raw`: a command that retries
 * prints both.
 */
function echoingS3() {
  const failures = new Map<string, number>();
  return serve(async (req) => {
    await req.body?.cancel();
    const url = new URL(req.url);
    const prefix = url.searchParams.get("prefix") ?? url.pathname.split("/")[2] ?? "";
    const top = prefix.split("/")[0];
    const fail = () => {
      const n = (failures.get(top) ?? (top.endsWith("-raw") ? 0 : 1)) + 1;
      failures.set(top, n);
      return n % 2 === 1
        ? s3Error(400, "EchoingProblem", echo())
        : s3Error(500, "InternalError", echo());
    };
    if (url.searchParams.get("list-type") === "2") {
      if (prefix.startsWith("list-") && prefix === `${top}/`) return fail();
      const xml = `<ListBucketResult><Name>echo-bucket</Name><Prefix>${prefix}</Prefix>` +
        `<KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>`;
      return new Response(xml, { headers: { "content-type": "application/xml" } });
    }
    if (req.method === "PUT") return fail();
    return s3Error(404, "NoSuchKey", "The specified key does not exist.");
  });
}

Deno.test("#24.1 the redactor removes every encoding of a known secret", () => {
  const secret = `tok/en+${crypto.randomUUID()}==`;
  addSecret(secret);
  for (const form of secretEncodings(secret)) {
    assert.equal(redactLine(`a ${form} b`), "a [redacted] b", form);
    // In a JSON line, between escaped quotes: the line stays JSON.
    const parsed = JSON.parse(redactLine(JSON.stringify({ msg: `"${form}"` })));
    assert.equal(parsed.msg, '"[redacted]"', form);
  }
  // Inside a longer base64 text, at each of the three byte offsets.
  for (const pad of ["", "x", "xy"]) {
    const out = redactLine(btoa(`${pad}{"token":"${secret}"}`));
    assert.match(out, /\[redacted\]/, pad);
    assert.ok(!out.includes(btoa(secret).slice(4, 20)), out);
  }
  // Percent-encoded twice, JSON-escaped twice.
  assert.equal(redactLine(encodeURIComponent(encodeURIComponent(secret))), "[redacted]");
  assert.equal(redactLine(JSON.stringify(JSON.stringify(secret)).slice(3, -3)), "[redacted]");
  assert.equal(
    redactLine("\u001b[31mred\u0007 \u009b \u202e\tend"),
    "\\u001b[31mred\\u0007 \\u009b \\u202e\\u0009end",
  );
  // A JSON line stays JSON, with the same text once parsed.
  const json = JSON.stringify({ msg: "a\u001b[0m\u0085b" });
  assert.deepEqual(JSON.parse(redactLine(json)), { msg: "a\u001b[0m\u0085b" });
});

Deno.test({
  name: "#24.1 a secret echoed in any encoding is never printed: restore, backup, list, " +
    "list --json, watch (text and JSON logs)",
  ...LOOSE,
  fn: async () => {
    const s3 = echoingS3();
    const dir = await tempDir();
    const scan = new SecretScan();
    scan.plant(SESSION_TOKEN, SECRET_KEY);
    try {
      const env = (prefix: string, format = "text") =>
        baseEnv({
          LIFEBOAT_URL: `s3://echo-bucket/${prefix}`,
          AWS_ENDPOINT_URL_S3: s3.url,
          AWS_REGION: "us-east-1",
          AWS_ACCESS_KEY_ID: "AKIDLIFEBOATECHO",
          AWS_SECRET_ACCESS_KEY: SECRET_KEY,
          AWS_SESSION_TOKEN: SESSION_TOKEN,
          LIFEBOAT_S3_MAX_ATTEMPTS: "1",
          LIFEBOAT_RESTORE_ATTEMPTS: "2",
          LIFEBOAT_LOG_LEVEL: "debug",
          LIFEBOAT_LOG_FORMAT: format,
        });
      // A database of its own for each run: they run at once, and each takes its lock.
      let n = 0;
      const db = () => {
        makeDb(`${dir}/db${++n}.db`, 5);
        return ["--db", `${dir}/db${n}.db`];
      };
      // Restore, backup and watch retry: each prints a raw and a mapped error (see echoingS3).
      const runs: [string, string[], Record<string, string>][] = [
        ["restore", ["restore", "--db", `${dir}/restored.db`], env("list-a-raw")],
        ["backup", ["backup", ...db()], env("put-a-raw")],
        ["list", ["list", ...db()], env("list-b-raw")],
        ["list --json", ["list", "--json", ...db()], env("list-c", "json")],
        // The database is there: watch keeps it, `true` exits, the final backup fails.
        ["watch, text logs", ["watch", ...db(), "--", "true"], env("put-b-raw")],
        ["watch, JSON logs", ["watch", ...db(), "--", "true"], env("put-c", "json")],
      ];
      const results = await Promise.all(
        runs.map(async ([what, args, e]) => [what, e, await runLifeboat(args, e)] as const),
      );
      for (const [what, , r] of results) scan.record(what, r);
      const { lines } = scan.assertClean();
      assert.ok(lines >= 14, `scanned ${lines} lines`);
      for (const [what, e, r] of results) {
        assert.equal(r.code, 1, `${what} exits 1:\n${r.stderr}`);
        const shown = ["EchoingProblem", "InternalError"].filter((c) => r.stderr.includes(c));
        assert.equal(shown.length, what.startsWith("list") ? 1 : 2, `${what}:\n${r.stderr}`);
        assert.match(r.stderr, /\[redacted\]/, `${what} redacted something`);
        assertNoRawControl(what, r);
        if (e.LIFEBOAT_LOG_FORMAT === "json") {
          for (const line of r.lines) JSON.parse(line); // escapes keep every line JSON
        } else assert.match(r.stderr, /\\u001b\[2J/, `${what} shows the ESC escaped`);
      }
    } finally {
      await s3.stop();
    }
  },
});

/** Asserts that no C0 (but the newline ending each line), DEL or C1 character was printed. */
function assertNoRawControl(what: string, r: RunResult): void {
  // deno-lint-ignore no-control-regex -- looking for control characters is the point
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/;
  assert.doesNotMatch(r.stderr, raw, `${what}: a raw control character on stderr`);
  assert.doesNotMatch(r.stdout, raw, `${what}: a raw control character on stdout`);
}
