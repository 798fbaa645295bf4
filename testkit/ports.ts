/**
 * Loopback ports for tests, without the pick-release-bind race: servers of the test itself bind
 * port 0 (Deno.serve / Deno.listen) and read the port back; a child process that takes a port
 * number (lifeboat's LIFEBOAT_METRICS_ADDR refuses 0) is started again on another port when it
 * finds its port taken.
 */
import { type RunningLifeboat, spawnLifeboat } from "./cli.ts";

/**
 * A loopback port that nothing listens on: the kernel's pick, closed at once. Only for "nothing
 * answers there" cases (an unreachable store); never to listen on later.
 */
export function closedPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

/** True when `err`, or a cause of it, says the address is in use. */
function inUse(err: unknown): boolean {
  for (let e = err; e; e = (e as { cause?: unknown }).cause) {
    if (e instanceof Deno.errors.AddrInUse) return true;
    if (/address already in use|AddrInUse/i.test(String((e as Error).message ?? e))) return true;
  }
  return false;
}

/**
 * Calls `start` with a port the kernel just handed out; when the port turns out to be taken by the
 * time `start` binds it (another process got it in between), calls it again with another, up to
 * 5 times. For servers that cannot take port 0 or a bound socket.
 */
export async function onFreePort<T>(start: (port: number) => T | Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await start(closedPort());
    } catch (err) {
      if (attempt >= 5 || !inUse(err)) throw err;
    }
  }
}

/**
 * Spawns `lifeboat ARGS` (a `watch`) with LIFEBOAT_METRICS_ADDR on a free loopback port, once it
 * serves metrics there (again on another port if that one was taken); `wrap` as spawnLifeboat's.
 */
export function spawnWithMetrics(
  args: string[],
  env: Record<string, string>,
  wrap: string[] = [],
): Promise<{ w: RunningLifeboat; metricsPort: number }> {
  return onFreePort(async (metricsPort) => {
    const w = spawnLifeboat(
      args,
      { ...env, LIFEBOAT_METRICS_ADDR: `127.0.0.1:${metricsPort}` },
      wrap,
    );
    const line = await w.waitForLine(/serving metrics at|cannot serve metrics/, 60_000);
    if (/cannot serve metrics/.test(line)) throw new Error((await w.done()).stderr);
    return { w, metricsPort };
  });
}
