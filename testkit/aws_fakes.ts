/**
 * Test doubles for the AWS side of authentication, all on loopback: a recording proxy in front
 * of moto (what STS and S3 were shown), fake S3 and STS servers that answer with errors, a fake
 * fly.io machine API on a unix socket, fake JWTs, and a scanner that proves no planted secret
 * ever reaches lifeboat's output.
 */
import assert from "node:assert/strict";
import type { RunResult } from "./cli.ts";
import { type SeenRequest, startS3Proxy } from "./s3_proxy.ts";

/** Returns a JWT-shaped token (unsigned; moto does not check) with a distinctive signature. */
export function fakeJwt(sub = "test-org:test-app:machine1", aud = "sts.amazonaws.com"): string {
  const b64 = (v: unknown) =>
    btoa(JSON.stringify(v)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  const now = Math.floor(Date.now() / 1000);
  const sig = crypto.randomUUID().replaceAll("-", "") + crypto.randomUUID().replaceAll("-", "");
  return [
    b64({ alg: "RS256", typ: "JWT", kid: "test" }),
    b64({ iss: "https://oidc.fly.io/test-org", aud, sub, iat: now, exp: now + 600 }),
    `sig${sig}`,
  ].join(".");
}

/** One AssumeRoleWithWebIdentity the proxy saw, with what STS answered. */
export interface StsCall {
  token: string;
  roleArn: string;
  sessionName: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

/** One S3 request the proxy saw: the access key id that signed it and its session token. */
export interface S3Call {
  method: string;
  path: string;
  accessKeyId: string;
  sessionToken: string;
}

/** A loopback HTTP server for one test; `url` is its base address. */
export interface FakeServer {
  url: string;
  /** Stops the server; safe to call twice. */
  stop(): Promise<void>;
}

/** The S3 proxy in front of moto, with the STS calls it saw and the S3 requests' signers. */
export interface RecordingProxy extends FakeServer {
  sts: StsCall[];
  s3: S3Call[];
}

/** Starts `handler` on 127.0.0.1 on a free port. */
export function serve(handler: (req: Request) => Response | Promise<Response>): FakeServer {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handler);
  let stopped = false;
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.shutdown();
    },
  };
}

const tag = (xml: string, name: string) =>
  new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml)?.[1] ?? "";

/**
 * Starts the S3 proxy (testkit/s3_proxy.ts) to `target`, recording every STS
 * AssumeRoleWithWebIdentity (the token shown and the credentials returned) and every S3 request's
 * signing key. With `expiresInMs`, STS answers are rewritten to expire that long from now, to
 * force early renewals.
 */
export function startRecordingProxy(target: string, expiresInMs?: number): RecordingProxy {
  const sts: StsCall[] = [];
  const recordSts = async (res: Response, seen: SeenRequest): Promise<Response> => {
    if (seen.form?.get("Action") !== "AssumeRoleWithWebIdentity") return res;
    let xml = await res.text();
    if (expiresInMs !== undefined && res.ok) {
      const at = new Date(Date.now() + expiresInMs).toISOString();
      xml = xml.replace(/<Expiration>[^<]*<\/Expiration>/, `<Expiration>${at}</Expiration>`);
    }
    sts.push({
      token: seen.form.get("WebIdentityToken") ?? "",
      roleArn: seen.form.get("RoleArn") ?? "",
      sessionName: seen.form.get("RoleSessionName") ?? "",
      accessKeyId: tag(xml, "AccessKeyId"),
      secretAccessKey: tag(xml, "SecretAccessKey"),
      sessionToken: tag(xml, "SessionToken"),
    });
    const headers = new Headers(res.headers);
    headers.delete("content-length");
    headers.delete("transfer-encoding");
    return new Response(xml, { status: res.status, headers });
  };
  const proxy = startS3Proxy(target, { transforms: [recordSts] });
  return {
    url: proxy.endpoint,
    stop: () => proxy.stop(),
    sts,
    get s3(): S3Call[] {
      return proxy.requests.filter((r) => !r.form).map((r) => ({
        method: r.method,
        path: r.path,
        accessKeyId: r.accessKeyId ?? "",
        sessionToken: r.sessionToken ?? "",
      }));
    },
  };
}

/** Returns an S3 error response as S3 sends it. */
export function s3Error(status: number, code: string, message: string): Response {
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>${message}</Message><RequestId>TESTREQUEST</RequestId></Error>`;
  return new Response(xml, { status, headers: { "content-type": "application/xml" } });
}

/** Returns an STS (query protocol) error response. */
export function stsError(status: number, code: string, message: string): Response {
  const xml = `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>` +
    `<Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error>` +
    `<RequestId>test-request</RequestId></ErrorResponse>`;
  return new Response(xml, { status, headers: { "content-type": "text/xml" } });
}

/** Returns a ListObjectsV2 answer listing `keys` (full object keys) in `bucket`. */
export function listResponse(bucket: string, prefix: string, keys: string[]): Response {
  const contents = keys.map((k) => `<Contents><Key>${k}</Key><Size>4096</Size></Contents>`);
  const xml = `<?xml version="1.0" encoding="UTF-8"?>\n` +
    `<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${bucket}</Name>` +
    `<Prefix>${prefix}</Prefix><KeyCount>${keys.length}</KeyCount><MaxKeys>3</MaxKeys>` +
    `<IsTruncated>false</IsTruncated>${contents.join("")}</ListBucketResult>`;
  return new Response(xml, { headers: { "content-type": "application/xml" } });
}

/** A fake fly.io machine API on a unix socket that mints tokens. */
export interface FakeFlyApi {
  path: string;
  /** Each request seen: method, path and JSON body. */
  requests: { method: string; path: string; body: unknown }[];
  /** Every token handed out, in order. */
  minted: string[];
  stop(): Promise<void>;
}

/** Serves POST /v1/tokens/oidc on the unix socket `path`, answering a new fake JWT each time. */
export function startFakeFlyApi(path: string, sub?: string): FakeFlyApi {
  const requests: FakeFlyApi["requests"] = [];
  const minted: string[] = [];
  const server = Deno.serve({ path, transport: "unix", onListen() {} }, async (req) => {
    const body = await req.json().catch(() => undefined);
    requests.push({ method: req.method, path: new URL(req.url).pathname, body });
    if (req.method !== "POST" || new URL(req.url).pathname !== "/v1/tokens/oidc") {
      return new Response("not found", { status: 404 });
    }
    const token = fakeJwt(sub);
    minted.push(token);
    return new Response(token);
  });
  return { path, requests, minted, stop: () => server.shutdown() };
}

/**
 * The ways a server or proxy may echo `secret`: itself, URL-encoded (encodeURIComponent with
 * upper- and lower-case hex, and RFC 3986 as the AWS SDK encodes), base64 (standard and URL-safe,
 * padded or not) and JSON-escaped (`\/`, and every character as `\uXXXX`).
 */
export function secretEncodings(secret: string): string[] {
  const uri = encodeURIComponent(secret);
  const rfc3986 = uri.replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  const b64 = btoa(String.fromCharCode(...new TextEncoder().encode(secret)));
  const url = b64.replaceAll("+", "-").replaceAll("/", "_");
  return [
    secret,
    uri,
    uri.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()),
    rfc3986,
    b64,
    b64.replace(/=+$/, ""),
    url,
    url.replace(/=+$/, ""),
    JSON.stringify(secret).slice(1, -1).replaceAll("/", "\\/"),
    [...secret].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`).join(""),
  ];
}

/** Consecutive characters of a planted secret (in any encoding) that count as a leak. */
const LEAK_WINDOW = 16;

/**
 * Collects every line lifeboat printed in a test file and the secrets planted for it; a secret
 * can be planted after the run that might have leaked it (e.g. STS's answer seen by a proxy).
 * A line leaks when it holds any 16 consecutive characters of a planted secret in any of
 * `secretEncodings` (so a secret cut short leaks too), or the signature part of a JWT.
 */
export class SecretScan {
  private readonly secrets = new Set<string>();
  private readonly outputs: { what: string; lines: string[] }[] = [];

  /** Adds values that must never appear in lifeboat's output. */
  plant(...values: string[]): void {
    for (const v of values) if (v.length >= 8) this.secrets.add(v);
  }

  /** Records one run's stdout and stderr lines and returns the result unchanged. */
  record(what: string, r: RunResult): RunResult {
    this.outputs.push({ what, lines: [...r.lines, ...r.stdout.split("\n")] });
    return r;
  }

  /** Asserts that no recorded line holds a planted secret (see the class); returns the counts. */
  assertClean(): { lines: number; secrets: number } {
    const windows = new Map<string, string>();
    const short: [string, string][] = [];
    for (const s of this.secrets) {
      const parts = s.split(".");
      const whole = parts.length === 3 ? [s, parts[2]] : [s];
      for (const needle of whole.flatMap(secretEncodings)) {
        if (needle.length < LEAK_WINDOW) short.push([needle, s]);
        for (let i = 0; i + LEAK_WINDOW <= needle.length; i++) {
          windows.set(needle.slice(i, i + LEAK_WINDOW), s);
        }
      }
    }
    let lines = 0;
    for (const o of this.outputs) {
      for (const line of o.lines) {
        lines++;
        for (let i = 0; i <= line.length; i++) {
          const secret = windows.get(line.slice(i, i + LEAK_WINDOW)) ??
            short.find(([needle]) => line.startsWith(needle, i))?.[1];
          assert.ok(
            secret === undefined,
            `a planted secret (${secret?.slice(0, 6)}…) leaked in ${o.what}: ${line}`,
          );
        }
      }
    }
    return { lines, secrets: this.secrets.size };
  }
}
