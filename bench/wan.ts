/**
 * A WAN-shaped link in front of a local S3 server, for P11: a TCP proxy that caps every
 * connection at `mibPerS` in each direction and delays every byte by `latencyMs` one way.
 *
 * Why TCP and not HTTP: the shape must apply to whatever the clients send (SigV4-signed requests
 * keep their Host header untouched) and per connection, as a real long-distance link does. Each
 * direction holds at most one bandwidth-delay product in flight, so a single stream tops out at
 * the cap, as TCP behind a window of that size would, and the sender feels backpressure.
 */
import { startTcpLink } from "../testkit/tcp_link.ts";

/** Where the shaped link listens, and how to stop it. */
export interface WanLink {
  /** `http://127.0.0.1:PORT`: the S3 endpoint as seen through the link. */
  endpoint: string;
  stop(): Promise<void>;
}

/** The link's shape: a per-connection cap in MiB/s and a one-way latency in milliseconds. */
export interface WanShape {
  mibPerS: number;
  latencyMs: number;
}

/** Starts a shaped TCP link to `upstream` (`http://host:port`) on a free loopback port. */
export function startWanLink(upstream: string, shape: WanShape): WanLink {
  return startTcpLink(upstream, async (client, connect) => {
    const server = await connect();
    await Promise.all([pump(client, server, shape), pump(server, client, shape)]);
  });
}

/**
 * Copies `from` to `to`, each chunk leaving no earlier than `latencyMs` after it arrived and no
 * faster than the cap; reading stops while a bandwidth-delay product is in flight.
 */
async function pump(from: Deno.Conn, to: Deno.Conn, shape: WanShape): Promise<void> {
  const bytesPerMs = (shape.mibPerS * 1024 * 1024) / 1000;
  const window = Math.max(64 * 1024, Math.ceil(bytesPerMs * shape.latencyMs * 2));
  const queue: { at: number; data: Uint8Array }[] = [];
  let queued = 0;
  let ended = false;
  let wake: (() => void) | undefined;
  let room: (() => void) | undefined;
  const nudge = () => {
    wake?.();
    wake = undefined;
  };

  const reader = (async () => {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      while (queued >= window) await new Promise<void>((r) => (room = r));
      const n = await from.read(buf);
      if (n === null) break;
      queue.push({ at: performance.now() + shape.latencyMs, data: buf.slice(0, n) });
      queued += n;
      nudge();
    }
    ended = true;
    nudge();
  })().catch(() => {
    // The other side closed: what is queued still goes out, then this direction ends.
    ended = true;
    nudge();
  });

  let free = performance.now(); // when the capped link can take the next byte
  for (;;) {
    if (queue.length === 0) {
      if (ended) break;
      await new Promise<void>((r) => (wake = r));
      continue;
    }
    const { at, data } = queue[0];
    const start = Math.max(at, free);
    const wait = start - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    try {
      for (let off = 0; off < data.length;) off += await to.write(data.subarray(off));
    } catch (err) {
      // The receiving side is gone: end this pair (the caller closes both connections).
      room?.();
      throw err;
    }
    free = Math.max(start, free) + data.length / bytesPerMs;
    queue.shift();
    queued -= data.length;
    room?.();
    room = undefined;
  }
  await reader;
  try {
    await to.closeWrite();
  } catch { /* closed */ }
}
