/**
 * The one S3 proxy of tests and benchmarks: sits between a client (lifeboat, the AWS CLI, the SDK)
 * and an S3 server on 127.0.0.1, names and records every request (`classify`), counts them by
 * operation, and on chosen requests returns errors, stalls, resets, truncates or damages bodies.
 * `transforms` rewrite answers on the way back (the STS recorder of the auth tests is one). Link
 * shaping is not done here: bench/wan.ts shapes at the TCP level.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { startTcpLink, type TcpLink } from "./tcp_link.ts";

/** A request as the proxy saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The S3 operation (`classify`): ListObjectsV2, UploadPart, …; "POST" for an STS call. */
  op: string;
  /** Arrival time (performance.now). */
  t: number;
  /** `Credential=AKID/…` access key id from the Authorization header, if any. */
  accessKeyId?: string;
  /** The x-amz-security-token header, if any. */
  sessionToken?: string;
  /** The body of a form request (STS's query protocol), read on the way. */
  form?: URLSearchParams;
  /** The request's headers, as they arrived. */
  headers: Headers;
}

/**
 * Names the S3 operation of a path-style request (ListObjectsV2, UploadPart, …); `headers` tell a
 * CopyObject (a PUT with `x-amz-copy-source`: the kept copy) from a PutObject.
 */
export function classify(method: string, url: URL, headers?: Headers): string {
  const q = url.searchParams;
  const hasKey = url.pathname.split("/").filter(Boolean).length > 1;
  switch (method) {
    case "GET":
      if (q.get("list-type") === "2") return "ListObjectsV2";
      if (q.has("uploads")) return "ListMultipartUploads";
      if (q.has("uploadId")) return "ListParts";
      return hasKey ? "GetObject" : "ListObjects";
    case "HEAD":
      return hasKey ? "HeadObject" : "HeadBucket";
    case "PUT":
      if (q.has("partNumber")) return "UploadPart";
      if (q.has("tagging")) return "PutObjectTagging";
      if (hasKey && headers?.has("x-amz-copy-source")) return "CopyObject";
      return hasKey ? "PutObject" : "CreateBucket";
    case "POST":
      if (q.has("uploads")) return "CreateMultipartUpload";
      if (q.has("uploadId")) return "CompleteMultipartUpload";
      if (q.has("delete")) return "DeleteObjects";
      return "POST";
    case "DELETE":
      return q.has("uploadId") ? "AbortMultipartUpload" : "DeleteObject";
    default:
      return method;
  }
}

/** Operations that write to the store (what "PUT requests" counts). */
export const WRITE_OPS: ReadonlySet<string> = new Set([
  "PutObject",
  "CopyObject",
  "PutObjectTagging",
  "UploadPart",
  "CreateMultipartUpload",
  "CompleteMultipartUpload",
]);

/** What to do to a matching request. */
export type FaultAction =
  | { kind: "status"; status: number; code: string }
  | { kind: "stall"; ms: number }
  | { kind: "reset"; afterBytes: number }
  | { kind: "truncate"; toBytes: number }
  | { kind: "hang"; afterBytes: number }
  /** Answers by itself, never reaching the store: a 200 from something that is not S3. */
  | { kind: "reply"; status: number; body: string; contentType?: string }
  /**
   * Flips one byte of the request body on the way, then checks Content-MD5 as S3 does (moto does
   * not), unless `serverChecks`: then the upstream server's own check is what is tested.
   */
  | { kind: "corruptRequest"; serverChecks?: boolean }
  /** Flips the response body's byte at `atByte` (a transient bit error on the way back). */
  | { kind: "flip"; atByte: number };

/** A rule: requests matching `match` get `action`, at most `times` times (default: always). */
export interface Fault {
  match: (r: SeenRequest) => boolean;
  action: FaultAction;
  times?: number;
}

/**
 * Rewrites an answer on its way back to the client (after any fault): the request as seen and
 * the upstream's (or a fault's) response in, the response to send out.
 */
export type ProxyTransform = (res: Response, seen: SeenRequest) => Response | Promise<Response>;

/** How to start a proxy. */
export interface ProxyOptions {
  /** Port on 127.0.0.1; default 0: the kernel picks a free one (read it from `endpoint`). */
  port?: number;
  /**
   * The upstream checks SigV4 signatures (unlike moto): requests keep the Host the client signed,
   * bodies are buffered.
   */
  signedUpstream?: boolean;
  /** Applied in order to every answer; e.g. a recorder. */
  transforms?: ProxyTransform[];
  /** Serve HTTPS with this certificate and key (PEM); the endpoint is then https://. */
  tls?: { cert: string; key: string };
}

/** A running proxy. */
export interface S3Proxy {
  endpoint: string;
  /** Every request so far (since the last `reset`), in arrival order. */
  requests: SeenRequest[];
  faults: Fault[];
  /** How many faults were applied so far. */
  injected: number;
  /** Requests per operation since the last `reset`. */
  counts(): Record<string, number>;
  /** Forgets the requests, faults and injection count so far (a new scene starts clean). */
  reset(): void;
  /** Resolves with the operation of the first request from now on whose operation is in `ops`. */
  waitFor(ops: string[], ms: number): Promise<string>;
  /** Stops the proxy; safe to call twice. */
  stop(): Promise<void>;
}

const isBackup = (r: SeenRequest) => r.path.endsWith(".sqlite3");

/** Predicates for fault rules and counts ("get" and "put" are of backup objects). */
export const is = {
  list: (r: SeenRequest) => r.op === "ListObjectsV2",
  get: (r: SeenRequest) => r.op === "GetObject" && isBackup(r),
  put: (r: SeenRequest) => r.op === "PutObject" && isBackup(r),
  part: (r: SeenRequest) => r.op === "UploadPart",
  complete: (r: SeenRequest) => r.op === "CompleteMultipartUpload",
  head: (r: SeenRequest) => r.method === "HEAD",
  tagging: (r: SeenRequest) => r.op === "PutObjectTagging",
  marker: (r: SeenRequest) => r.path.endsWith("/lifeboat.json"),
  any: (_: SeenRequest) => true,
};

function s3Error(status: number, code: string): Response {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>`;
  return new Response(body, { status, headers: { "content-type": "application/xml" } });
}

/** The failure of a body the proxy cuts on purpose ("reset"): expected, so never logged. */
class InjectedReset extends Error {
  constructor() {
    super("connection reset by the test proxy");
    this.name = "InjectedReset";
  }
}

/**
 * Deno.serve's error handler: an injected reset is what the test asked for and stays quiet
 * (Deno's default handler prints every failed body with its stack, which read as a failure in a
 * passing run); anything else is logged as the default handler would.
 */
function onServeError(err: unknown): Response {
  if (!(err instanceof InjectedReset)) console.error(err);
  return new Response("Internal Server Error", { status: 500 });
}

/** Returns a stream of `body`'s first `limit` bytes; then ends cleanly, fails, or hangs. */
function cut(
  body: ReadableStream<Uint8Array>,
  limit: number,
  then: "end" | "fail" | "hang",
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let sent = 0;
  let hung = () => {};
  return new ReadableStream({
    async pull(ctl) {
      const { done, value } = await reader.read();
      if (done) return ctl.close();
      const room = limit - sent;
      if (value.length < room) {
        sent += value.length;
        return ctl.enqueue(value);
      }
      if (room > 0) ctl.enqueue(value.subarray(0, room));
      sent = limit;
      await reader.cancel().catch(() => {});
      if (then === "fail") ctl.error(new InjectedReset());
      else if (then === "end") ctl.close();
      else await new Promise<void>((resolve) => (hung = resolve)); // until the client gives up
    },
    cancel: (reason) => {
      hung();
      return reader.cancel(reason);
    },
  });
}

/** Returns `body` with the byte at offset `at` flipped (all other bytes as they come). */
function flipAt(body: ReadableStream<Uint8Array>, at: number): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(
    new TransformStream({
      transform(chunk, ctl) {
        if (at >= seen && at < seen + chunk.length) {
          chunk = chunk.slice();
          chunk[at - seen] ^= 0xff;
        }
        seen += chunk.length;
        ctl.enqueue(chunk);
      },
    }),
  );
}

/**
 * Sends `req` with `body` on to `upstream` keeping every header, Host included, so that a
 * server checking SigV4 signatures accepts it (node:http, since fetch sets Host itself).
 */
function forwardSigned(req: Request, upstream: string, body: Uint8Array): Promise<Response> {
  const to = new URL(upstream);
  const url = new URL(req.url);
  return new Promise((resolve, reject) => {
    const out = httpRequest({
      host: to.hostname,
      port: to.port,
      method: req.method,
      path: url.pathname + url.search,
      headers: Object.fromEntries(req.headers),
    }, (res) => {
      const chunks: Uint8Array[] = [];
      res.on("data", (c: Uint8Array) => chunks.push(c));
      res.on("end", () => {
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (v) headers.set(k, String(v));
        resolve(
          new Response(chunks.length ? Buffer.concat(chunks) : null, {
            status: res.statusCode ?? 502,
            headers,
          }),
        );
      });
      res.on("error", reject);
    });
    out.on("error", reject);
    out.end(body);
  });
}

/** Sends `req` on to `upstream` (same path, query, method, headers and streamed body). */
export function forward(
  req: Request,
  upstream: string,
  body: BodyInit | null = req.body,
): Promise<Response> {
  const url = new URL(req.url);
  const headers = new Headers(req.headers);
  headers.delete("host");
  return fetch(upstream + url.pathname + url.search, {
    method: req.method,
    headers,
    body,
    redirect: "manual",
    // @ts-ignore: Deno's fetch accepts duplex for streaming request bodies.
    duplex: "half",
  });
}

/** Applies `fault`'s action to one request (none: passes it on untouched). */
async function answer(
  req: Request,
  action: FaultAction | undefined,
  send: (req: Request, body?: Uint8Array<ArrayBuffer>) => Promise<Response>,
  body?: Uint8Array<ArrayBuffer>,
): Promise<Response> {
  if (action?.kind === "status") {
    await req.body?.cancel();
    return s3Error(action.status, action.code);
  }
  if (action?.kind === "stall") {
    // Hold the request until the client gives up (or `ms` passes).
    await new Promise<void>((resolve) => {
      if (req.signal.aborted) return resolve();
      const timer = setTimeout(resolve, action.ms);
      req.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
    if (req.signal.aborted) return new Response(null, { status: 499 });
  }
  if (action?.kind === "reply") {
    await req.body?.cancel();
    const headers = { "content-type": action.contentType ?? "text/html" };
    return new Response(action.body, { status: action.status, headers });
  }
  if (action?.kind === "corruptRequest") {
    const bytes = body ?? new Uint8Array(await req.arrayBuffer());
    bytes[bytes.length >> 1] ^= 0x01;
    // moto does not check Content-MD5; S3 (and radosgw) do: answer as they would.
    const md5 = req.headers.get("content-md5");
    const refused = md5 && md5 !== createHash("md5").update(bytes).digest("base64");
    if (refused && !action.serverChecks) {
      return s3Error(400, "BadDigest");
    }
    return await send(req, bytes);
  }
  const res = await send(req, body);
  if (!res.body || !action || action.kind === "stall") return res;
  if (action.kind === "flip") {
    return new Response(flipAt(res.body, action.atByte), {
      status: res.status,
      headers: res.headers,
    });
  }
  const out = new Headers(res.headers);
  out.delete("content-length");
  const limit = action.kind === "truncate" ? action.toBytes : action.afterBytes;
  const then = ({ reset: "fail", truncate: "end", hang: "hang" } as const)[action.kind];
  return new Response(cut(res.body, limit, then), { status: res.status, headers: out });
}

/** Starts a proxy to `upstream` on 127.0.0.1 (by default on a port the kernel picks). */
export function startS3Proxy(upstream: string, o: ProxyOptions = {}): S3Proxy {
  const send = async (req: Request, body?: Uint8Array<ArrayBuffer>) =>
    o.signedUpstream
      ? await forwardSigned(req, upstream, body ?? new Uint8Array(await req.arrayBuffer()))
      : await forward(req, upstream, body ?? req.body);
  const ac = new AbortController();
  const waiters: { ops: string[]; resolve: (op: string) => void }[] = [];
  const server = Deno.serve(
    {
      hostname: "127.0.0.1",
      port: o.port ?? 0,
      signal: ac.signal,
      onListen() {},
      onError: onServeError,
      ...o.tls,
    },
    async (req) => {
      const url = new URL(req.url);
      const auth = req.headers.get("authorization") ?? "";
      const seen: SeenRequest = {
        method: req.method,
        path: url.pathname,
        query: url.searchParams,
        op: classify(req.method, url, req.headers),
        t: performance.now(),
        accessKeyId: /Credential=([^/]+)\//.exec(auth)?.[1],
        sessionToken: req.headers.get("x-amz-security-token") ?? undefined,
        headers: req.headers,
      };
      let body: Uint8Array<ArrayBuffer> | undefined;
      if (req.headers.get("content-type")?.startsWith("application/x-www-form-urlencoded")) {
        body = new Uint8Array(await req.arrayBuffer());
        seen.form = new URLSearchParams(new TextDecoder().decode(body));
      }
      proxy.requests.push(seen);
      for (const w of waiters.filter((w) => w.ops.includes(seen.op))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(seen.op);
      }
      const fault = proxy.faults.find((f) => (f.times ?? Infinity) > 0 && f.match(seen));
      if (fault) {
        if (fault.times !== undefined) fault.times--;
        proxy.injected++;
      }
      let res = await answer(req, fault?.action, send, body);
      for (const transform of o.transforms ?? []) res = await transform(res, seen);
      return res;
    },
  );
  let stopped = false;
  const proxy: S3Proxy = {
    endpoint: `${o.tls ? "https" : "http"}://127.0.0.1:${server.addr.port}`,
    requests: [],
    faults: [],
    injected: 0,
    counts() {
      const c: Record<string, number> = {};
      for (const { op } of proxy.requests) c[op] = (c[op] ?? 0) + 1;
      return c;
    },
    reset() {
      proxy.requests.length = 0;
      proxy.faults.length = 0;
      proxy.injected = 0;
    },
    waitFor(ops, ms) {
      return new Promise((resolve, reject) => {
        const w = {
          ops,
          resolve: (op: string) => {
            clearTimeout(timer);
            resolve(op);
          },
        };
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no ${ops.join("/")} request within ${ms} ms`));
        }, ms);
        waiters.push(w);
      });
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      ac.abort();
      await server.finished.catch(() => {});
    },
  };
  return proxy;
}

/** A TCP link in front of an S3 server that resets the connections of chosen requests. */
export interface ResettingLink extends TcpLink {
  /** How many connections were reset so far. */
  resets: number;
}

/**
 * Starts a TCP link to `upstream` that closes, unanswered and with the request unread (the
 * kernel then sends a reset), every connection whose first request line matches `cut` (e.g.
 * `/partNumber=/` for UploadPart); every other connection is passed through untouched.
 *
 * Why TCP and not the proxy: Deno.serve cannot reset a connection, and the proxy's `reset` cuts a
 * response body, which an UploadPart answer does not have. A connection the client reuses after
 * a request that passed is passed through whole (the link reads only first request lines).
 */
export function startResettingLink(upstream: string, cut: RegExp): ResettingLink {
  const link = startTcpLink(upstream, async (client, connect) => {
    const head = new Uint8Array(64 * 1024);
    const n = await client.read(head);
    if (n === null) return;
    const line = new TextDecoder().decode(head.subarray(0, Math.min(n, 2048))).split("\r\n")[0];
    if (cut.test(line)) {
      resetting.resets++;
      return; // closed by the link with the request's body unread: a reset
    }
    const server = await connect();
    await server.write(head.subarray(0, n));
    await Promise.all([
      client.readable.pipeTo(server.writable).catch(() => {}),
      server.readable.pipeTo(client.writable).catch(() => {}),
    ]);
  });
  const resetting: ResettingLink = { ...link, resets: 0 };
  return resetting;
}
