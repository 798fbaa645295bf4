/**
 * A fault-injecting HTTP proxy for tests: sits between lifeboat and the local S3 on 127.0.0.1,
 * records every request, and on chosen requests returns errors, stalls, resets or truncates.
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { request as httpRequest } from "node:http";
import { freePort } from "./moto.ts";

/** A request as the proxy saw it. */
export interface SeenRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** `Credential=AKID/…` access key id from the Authorization header, if any. */
  accessKeyId?: string;
}

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

/** A running proxy. */
export interface FaultProxy {
  endpoint: string;
  requests: SeenRequest[];
  faults: Fault[];
  /** How many faults were applied so far. */
  injected: number;
  stop(): Promise<void>;
}

const isBackup = (r: SeenRequest) => r.path.endsWith(".sqlite3");

/** S3-style classification helpers for fault rules ("get" and "put" are of backup objects). */
export const is = {
  list: (r: SeenRequest) => r.method === "GET" && r.query.get("list-type") === "2",
  get: (r: SeenRequest) =>
    r.method === "GET" && isBackup(r) && !r.query.has("list-type") && !r.query.has("uploads"),
  put: (r: SeenRequest) =>
    r.method === "PUT" && isBackup(r) && !r.query.has("partNumber") && !r.query.has("tagging"),
  part: (r: SeenRequest) => r.method === "PUT" && r.query.has("partNumber"),
  complete: (r: SeenRequest) => r.method === "POST" && r.query.has("uploadId"),
  head: (r: SeenRequest) => r.method === "HEAD",
  tagging: (r: SeenRequest) => r.method === "PUT" && r.query.has("tagging"),
  marker: (r: SeenRequest) => r.path.endsWith("/lifeboat.json"),
  any: (_: SeenRequest) => true,
};

function s3Error(status: number, code: string): Response {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code>` +
    `<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>`;
  return new Response(body, { status, headers: { "content-type": "application/xml" } });
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
      if (then === "fail") ctl.error(new Error("connection reset by the test proxy"));
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

/**
 * Starts a proxy to `upstream` on a free 127.0.0.1 port. With `signedUpstream` (a server that
 * checks SigV4 signatures, unlike moto) requests keep the Host the client signed, bodies buffered.
 */
export function startFaultProxy(
  upstream: string,
  o: { signedUpstream?: boolean } = {},
): FaultProxy {
  const send = async (req: Request, body?: Uint8Array<ArrayBuffer>) =>
    o.signedUpstream
      ? await forwardSigned(req, upstream, body ?? new Uint8Array(await req.arrayBuffer()))
      : await forward(req, upstream, body ?? req.body);
  const port = freePort();
  const ac = new AbortController();
  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    requests: [],
    faults: [],
    injected: 0,
    async stop() {
      ac.abort();
      await server.finished.catch(() => {});
    },
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port, signal: ac.signal, onListen() {} },
    async (req) => {
      const url = new URL(req.url);
      const auth = req.headers.get("authorization") ?? "";
      const seen: SeenRequest = {
        method: req.method,
        path: url.pathname,
        query: url.searchParams,
        accessKeyId: /Credential=([^/]+)\//.exec(auth)?.[1],
      };
      proxy.requests.push(seen);
      const fault = proxy.faults.find((f) => (f.times ?? Infinity) > 0 && f.match(seen));
      if (fault) {
        if (fault.times !== undefined) fault.times--;
        proxy.injected++;
      }
      const action = fault?.action;
      if (action?.kind === "status") {
        await req.body?.cancel();
        return s3Error(action.status, action.code);
      }
      if (action?.kind === "stall") {
        // Hold the request until the client gives up (or `ms` passes).
        await new Promise<void>((resolve) => {
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
        const bytes = new Uint8Array(await req.arrayBuffer());
        bytes[bytes.length >> 1] ^= 0x01;
        // moto does not check Content-MD5; S3 (and radosgw) do: answer as they would.
        const md5 = req.headers.get("content-md5");
        const refused = md5 && md5 !== createHash("md5").update(bytes).digest("base64");
        if (refused && !action.serverChecks) {
          return s3Error(400, "BadDigest");
        }
        return await send(req, bytes);
      }
      const res = await send(req);
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
      return new Response(cut(res.body, limit, then), {
        status: res.status,
        headers: out,
      });
    },
  );
  return proxy;
}
