/**
 * Prometheus metrics for `watch`: a small registry of what the restore and the backups did, and
 * an HTTP endpoint serving it as Prometheus text at /metrics (LIFEBOAT_METRICS_ADDR).
 */
import type { Clock } from "./clock.ts";
import type { BackupResult } from "./commands/backup.ts";
import type { RestoreResult } from "./commands/restore.ts";
import { oneLine, operationError } from "./errors.ts";
import { logger } from "./log.ts";

/** Where to listen; an empty hostname means every interface (IPv6 and IPv4). */
export interface ListenAddr {
  hostname: string;
  port: number;
}

/** How one periodic or final backup ended, as counted in `lifeboat_backups_total`. */
export type BackupOutcome = "uploaded" | "unchanged" | "skipped" | "failed" | "aborted";
/** How the restore at start ended, as shown by `lifeboat_restore_outcome`. */
export type RestoreOutcome = RestoreResult["outcome"] | "failed";

const BACKUP_OUTCOMES: readonly BackupOutcome[] = [
  "uploaded",
  "unchanged",
  "skipped",
  "failed",
  "aborted",
];
const RESTORE_OUTCOMES: readonly RestoreOutcome[] = ["restored", "fresh", "exists", "failed"];

/** The Content-Type of the Prometheus text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The settings the metrics expose, so alert rules need no constants of their own. */
export interface MetricsSettings {
  /** Milliseconds between periodic backups. */
  interval: number;
  /** Upper bound for the final backup, in milliseconds. */
  shutdownTimeoutMs: number;
}

/**
 * lifeboat's state for one `watch` run. Recording never throws; `render` reads the clock, so the
 * backup age is computed at scrape time.
 */
export class Metrics {
  readonly #clock: Clock;
  readonly #settings: MetricsSettings;
  /** When the database last matched what the store holds: restore, or a successful backup. */
  #protectedAt: number;
  #lastSuccessAt?: number;
  #last?: { ms: number; bytes: number };
  #backups = new Map<BackupOutcome, number>(BACKUP_OUTCOMES.map((o) => [o, 0]));
  #restore?: { outcome: RestoreOutcome; ms: number; bytes: number; futureMs: number };
  #problem?: string;
  #foreign?: { machine: string; at: number };

  /** Starts counting the backup age from now (until a restore or a backup says otherwise). */
  constructor(clock: Clock, settings: MetricsSettings) {
    this.#clock = clock;
    this.#settings = { interval: settings.interval, shutdownTimeoutMs: settings.shutdownTimeoutMs };
    this.#protectedAt = clock.now();
  }

  /**
   * Records how the restore ended. A restored or fresh database matches the store, so the backup
   * age restarts; an existing database keeps counting from lifeboat's start.
   */
  restored(r: RestoreResult | { outcome: "failed"; ms: number }): void {
    this.#restore = {
      outcome: r.outcome,
      ms: r.ms,
      bytes: "bytes" in r ? r.bytes ?? 0 : 0,
      futureMs: "futureMs" in r ? r.futureMs ?? 0 : 0,
    };
    if (r.outcome === "restored" || r.outcome === "fresh") this.#protectedAt = this.#clock.now();
  }

  /** Records a successful backup (uploaded, or unchanged since the last one): the age restarts. */
  backedUp(r: BackupResult): void {
    const now = this.#clock.now();
    this.#count(r.outcome);
    if (r.foreign) this.#foreign = { machine: r.foreign.machine, at: now };
    this.#protectedAt = now;
    this.#lastSuccessAt = now;
    this.#last = { ms: r.ms, bytes: r.bytes };
    this.#problem = undefined;
  }

  /** Records a backup that did not happen or did not finish, and why (for the stale-backup log). */
  notBackedUp(outcome: "skipped" | "failed" | "aborted", problem: string): void {
    this.#count(outcome);
    this.#problem = problem;
  }

  /** Milliseconds since the database last matched a backup in the store (never negative). */
  backupAgeMs(): number {
    return Math.max(0, this.#clock.now() - this.#protectedAt);
  }

  /** Why the last backup did not succeed; undefined after a success. */
  get lastProblem(): string | undefined {
    return this.#problem;
  }

  /** Returns every metric in the Prometheus text exposition format (version 0.0.4). */
  render(): string {
    const s = (ms: number) => ms / 1000;
    const restore = this.#restore;
    return [
      family(
        "lifeboat_backup_age_seconds",
        "gauge",
        "Seconds since the database last matched a backup in the store (the last successful backup, or the restore at start): the writes a crash would lose.",
        [[{}, s(this.backupAgeMs())]],
      ),
      family(
        "lifeboat_backup_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the last successful backup (uploaded or unchanged) of this process; 0 before the first.",
        [[{}, this.#lastSuccessAt === undefined ? 0 : s(this.#lastSuccessAt)]],
      ),
      family(
        "lifeboat_backup_last_duration_seconds",
        "gauge",
        "Duration of the last successful backup: snapshot, checksum and upload.",
        [[{}, s(this.#last?.ms ?? 0)]],
      ),
      family(
        "lifeboat_backup_last_bytes",
        "gauge",
        "Size of the database snapshot taken by the last successful backup.",
        [[{}, this.#last?.bytes ?? 0]],
      ),
      family(
        "lifeboat_backups_total",
        "counter",
        "Backups by outcome: uploaded, unchanged (identical to the last one, no upload), skipped (no database yet), failed, aborted (stopped for shutdown or cut short by LIFEBOAT_SHUTDOWN_TIMEOUT).",
        BACKUP_OUTCOMES.map((o) => [{ outcome: o }, this.#backups.get(o) ?? 0]),
      ),
      family(
        "lifeboat_restore_duration_seconds",
        "gauge",
        "Duration of the restore at start; 0 while it runs.",
        [[{}, s(restore?.ms ?? 0)]],
      ),
      family(
        "lifeboat_restore_bytes",
        "gauge",
        "Size of the restored database; 0 unless a backup was restored.",
        [[{}, restore?.bytes ?? 0]],
      ),
      family(
        "lifeboat_restore_outcome",
        "gauge",
        "1 for how the restore at start ended (restored, fresh: the store had no backup, exists: the database was already there, failed), 0 for the others.",
        RESTORE_OUTCOMES.map((o) => [{ outcome: o }, restore?.outcome === o ? 1 : 0]),
      ),
      family(
        "lifeboat_newest_backup_future_seconds",
        "gauge",
        "How far the newest backup's order time was ahead of this machine's clock at restore (0 when it was not): above a few minutes, a clock is off.",
        [[{}, s(restore?.futureMs ?? 0)]],
      ),
      family(
        "lifeboat_foreign_writer",
        "gauge",
        "1 once a backup written by another machine was found newest in the store since this process last looked: two writers share the store and one's writes will be lost.",
        [[{}, this.#foreign ? 1 : 0]],
      ),
      family(
        "lifeboat_foreign_writer_last_timestamp_seconds",
        "gauge",
        "Unix time another writer was last found newest in the store; 0 if never.",
        [[{}, this.#foreign ? s(this.#foreign.at) : 0]],
      ),
      family(
        "lifeboat_backup_interval_seconds",
        "gauge",
        "Time between periodic backups (LIFEBOAT_INTERVAL).",
        [[{}, s(this.#settings.interval)]],
      ),
      family(
        "lifeboat_shutdown_timeout_seconds",
        "gauge",
        "Upper bound for the final backup (LIFEBOAT_SHUTDOWN_TIMEOUT).",
        [[{}, s(this.#settings.shutdownTimeoutMs)]],
      ),
    ].join("");
  }

  #count(outcome: BackupOutcome): void {
    this.#backups.set(outcome, (this.#backups.get(outcome) ?? 0) + 1);
  }
}

type Sample = [labels: Record<string, string>, value: number];

/** One metric family: HELP and TYPE lines, then one line per sample. */
function family(name: string, type: "gauge" | "counter", help: string, samples: Sample[]): string {
  const lines = [`# HELP ${name} ${help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`];
  lines.push(`# TYPE ${name} ${type}`);
  for (const [labels, value] of samples) {
    const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
    lines.push(`${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${value}`);
  }
  return lines.join("\n") + "\n";
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
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
