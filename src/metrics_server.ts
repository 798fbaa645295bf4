/**
 * The HTTP endpoint for `watch`'s metrics: GET /metrics (LIFEBOAT_METRICS_ADDR) answers with
 * `Metrics.render()`. It never takes lifeboat down: connections are capped and timed out.
 */
import { oneLine, operationError } from "./errors.ts";
import { logger } from "./log.ts";
import { type Metrics, METRICS_CONTENT_TYPE } from "./metrics.ts";

/** Where to listen; an empty hostname means every interface (IPv6 and IPv4). */
export interface ListenAddr {
  hostname: string;
  port: number;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The address actually bound. */
  readonly addr: Deno.NetAddr;
  /** Stops serving and closes every open connection; never throws. */
  close(): Promise<void>;
}

/** Connections served at once; more are closed at once (a scrape needs one). */
export const MAX_METRICS_CONNECTIONS = 16;
/** A connection must send its whole request within this long. */
const REQUEST_TIMEOUT_MS = 5_000;
const MAX_REQUEST_BYTES = 8192;

/**
 * Serves `metrics.render()` at GET /metrics on `addr` (an empty hostname: IPv6 and IPv4, or
 * IPv4 alone where IPv6 is off). Throws an operation error (exit 1) naming the address when it
 * cannot listen, so `watch` stops before restoring anything. Once listening it can never take
 * lifeboat down: at most MAX_METRICS_CONNECTIONS connections are open at once (more are closed
 * on arrival), a request must arrive within 5 s, and errors (accept failing for lack of file
 * descriptors, a client gone) are logged once each and never thrown.
 */
export function serveMetrics(addr: ListenAddr, metrics: Metrics): MetricsServer {
  const listen = (hostname: string) => Deno.listen({ hostname, port: addr.port });
  let listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  const shown = addr.hostname === "" ? `:${addr.port}` : `${addr.hostname}:${addr.port}`;
  try {
    if (addr.hostname !== "") listener = listen(addr.hostname);
    else {
      try {
        listener = listen("::");
      } catch (err) {
        if (err instanceof Deno.errors.AddrInUse) throw err;
        listener = listen("0.0.0.0"); // IPv6 is off in this container
      }
    }
  } catch (err) {
    throw operationError(
      `cannot serve metrics on ${shown} (LIFEBOAT_METRICS_ADDR): ${oneLine(err)}`,
      "Pick a free port that is not the app's, or unset LIFEBOAT_METRICS_ADDR",
      err,
    );
  }
  const log = logger("metrics");
  const host = listener.addr.hostname.includes(":")
    ? `[${listener.addr.hostname}]`
    : listener.addr.hostname;
  log.info("serving metrics at http://{host}:{port}/metrics", {
    event: "metrics_listening",
    host,
    port: listener.addr.port,
  });
  const said = new Set<string>();
  const once = (kind: string, text: string, error?: unknown) => {
    if (said.has(kind)) return;
    said.add(kind);
    log.warn(text + " (logged once)", { event: "metrics_trouble", kind, error: oneLine(error) });
  };
  const open = new Set<Deno.Conn>();
  let closed = false;
  const accepting = (async () => {
    while (!closed) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch (err) {
        if (closed || err instanceof Deno.errors.BadResource) return;
        once("accept", "metrics endpoint cannot accept a connection: {error}; retrying", err);
        await new Promise((r) => setTimeout(r, 100)); // e.g. out of file descriptors
        continue;
      }
      if (open.size >= MAX_METRICS_CONNECTIONS) {
        closeQuietly(conn);
        once(
          "cap",
          `metrics endpoint has ${MAX_METRICS_CONNECTIONS} connections open: closing new ones ` +
            "until they finish",
        );
        continue;
      }
      open.add(conn);
      answer(conn, metrics)
        .catch((err) => once("answer", "metrics endpoint could not answer: {error}", err))
        .finally(() => {
          open.delete(conn);
          closeQuietly(conn);
        });
    }
  })();
  return {
    addr: listener.addr,
    async close() {
      closed = true;
      try {
        listener.close();
      } catch { /* already closed */ }
      for (const conn of open) closeQuietly(conn);
      await accepting;
    },
  };
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** Reads one HTTP/1.x request head from `conn` (within the timeout) and answers it, then closes. */
async function answer(conn: Deno.Conn, metrics: Metrics): Promise<void> {
  const timer = setTimeout(() => closeQuietly(conn), REQUEST_TIMEOUT_MS);
  try {
    const head = await readHead(conn);
    if (head === undefined) return;
    const [method = "", target = ""] = head.split("\r\n", 1)[0].split(" ");
    const path = target.split("?")[0];
    let status = "200 OK", body = "", extra = "";
    if (path !== "/metrics") [status, body] = ["404 Not Found", "not found: try /metrics\n"];
    else if (method !== "GET" && method !== "HEAD") {
      [status, body, extra] = [
        "405 Method Not Allowed",
        "method not allowed\n",
        "Allow: GET, HEAD\r\n",
      ];
    } else body = metrics.render();
    const type = status.startsWith("200") ? METRICS_CONTENT_TYPE : "text/plain; charset=utf-8";
    const bytes = new TextEncoder().encode(body);
    const header =
      `HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${bytes.length}` +
      `\r\n${extra}Connection: close\r\n\r\n`;
    await writeAll(conn, new TextEncoder().encode(header));
    if (method !== "HEAD") await writeAll(conn, bytes);
  } finally {
    clearTimeout(timer);
  }
}

/** Returns the request head (up to the blank line), or undefined when the client sent none. */
async function readHead(conn: Deno.Conn): Promise<string | undefined> {
  const buf = new Uint8Array(MAX_REQUEST_BYTES);
  let len = 0;
  const decoder = new TextDecoder();
  while (len < buf.length) {
    const n = await conn.read(buf.subarray(len));
    if (n === null) return undefined;
    len += n;
    const text = decoder.decode(buf.subarray(0, len));
    if (text.includes("\r\n\r\n")) return text;
  }
  return decoder.decode(buf.subarray(0, len));
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}
