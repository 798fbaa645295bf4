/**
 * A TCP link on a free loopback port in front of a server: what to do with each connection is
 * the caller's (shape it, reset it, pass it through); the link tracks every connection it or the
 * caller opened and closes them all when the connection's handler ends or the link stops.
 */

/** A running link. */
export interface TcpLink {
  /** `http://127.0.0.1:PORT`: the upstream as seen through the link. */
  endpoint: string;
  /** Stops listening and closes every connection still open. */
  stop(): Promise<void>;
}

/**
 * Handles one client connection; `connect` opens a connection to the upstream (closed with the
 * client's when the handler ends). A throw ends this connection only.
 */
export type ConnectionHandler = (
  client: Deno.Conn,
  connect: () => Promise<Deno.Conn>,
) => Promise<void>;

/** Starts a link to `upstream` (`http://host:port`) that gives each connection to `handle`. */
export function startTcpLink(upstream: string, handle: ConnectionHandler): TcpLink {
  const target = new URL(upstream);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const close = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  };
  const serving = (async () => {
    for await (const client of listener) {
      open.add(client);
      const mine = [client];
      const connect = async () => {
        const server = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
        open.add(server);
        mine.push(server);
        return server;
      };
      handle(client, connect)
        .catch(() => {}) // a refused or reset connection ends this pair only
        .finally(() => mine.forEach(close));
    }
  })().catch(() => {});
  const { port } = listener.addr as Deno.NetAddr;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    async stop() {
      listener.close();
      for (const c of open) close(c);
      await serving;
    },
  };
}
