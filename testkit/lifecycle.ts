/**
 * fly.io's container lifecycle without Docker. Each "machine" is a fresh empty directory and a new
 * `lifeboat watch -- <example app>` process against the same store: it restores, a client writes
 * records through the app's HTTP API (counting the 201s), the machine gets SIGTERM at a random
 * moment, and the next machine checks that every acknowledged write came back.
 */
import { DatabaseSync } from "node:sqlite";
import { EXAMPLE_APP_CMD, runLifeboat, type RunningLifeboat } from "./cli.ts";
import { spawnWithMetrics } from "./ports.ts";
import { seededRandom, testRandom } from "./random.ts";

/** One acknowledged write: the id the app returned with its 201 and the text sent. */
export interface Ack {
  id: number;
  body: string;
}

/** How to run the machines. */
export interface LifecycleOptions {
  /** How many machines, one after the other. */
  machines: number;
  /** lifeboat's environment (baseEnv + store URL + S3 endpoint); each machine adds its own. */
  env: Record<string, string>;
  /** Directory under which each machine gets a fresh empty directory. */
  dir: string;
  /** LIFEBOAT_INTERVAL of each machine; default "1s", so periodic backups happen too. */
  interval?: string;
  /** The writes last a random time in [min, max] ms before SIGTERM; default [500, 3000]. */
  writeMs?: [number, number];
  /**
   * Seed of the random SIGTERM moments; default: LIFEBOAT_LIFECYCLE_SEED, else from the clock
   * (reported in the stats).
   */
  seed?: number;
  /** Progress lines (e.g. console.log); default silent. */
  log?: (line: string) => void;
  /**
   * The database files of each machine, in its `data/` directory (default `["app.db"]`). With
   * several, the example app copies every record into each, and each must come back.
   */
  dbs?: string[];
}

/** What happened on one machine. */
export interface MachineReport {
  machine: number;
  /** The restore's log event: restore_fresh, restore_finished, … (undefined: none logged). */
  restore?: string;
  /** The `ms` of that event. */
  restoreMs?: number;
  /** Writes this machine acknowledged. */
  acked: number;
  /** Writes the previous machine acknowledged that this one did not restore (per database). */
  lost: number;
  /** lifeboat's exit code. */
  code: number;
  /** How long the client wrote before SIGTERM. */
  sigtermAfterMs: number;
  /** backup_finished events (periodic and final). */
  backups: number;
  /** One scrape of LIFEBOAT_METRICS_ADDR's /metrics while the client was writing. */
  metrics: string;
  /** lifeboat's stderr lines. */
  lines: string[];
}

/** The outcome of a run of machines. */
export interface LifecycleStats {
  machines: number;
  /** Acknowledged writes, all machines together. */
  acked: number;
  /** Acknowledged writes missing on the next machine (or, for the last, on a final restore). */
  lost: number;
  /** Restore times of the machines that restored a backup, in ms, as logged. */
  restoreMs: number[];
  seed: number;
  reports: MachineReport[];
}

/** Parses lifeboat's JSON log lines; other lines (the app's) are skipped. */
export function events(lines: string[]): Record<string, unknown>[] {
  return lines.flatMap((l) => {
    if (!l.startsWith("{")) return [];
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** Waits until GET /healthz answers 200; throws if lifeboat exits first or after `ms`. */
async function waitHealthy(url: string, w: RunningLifeboat, ms = 30_000): Promise<void> {
  let exited = false;
  w.proc.status.then(() => (exited = true));
  const deadline = Date.now() + ms;
  for (;;) {
    if (exited) throw new Error(`lifeboat exited before the app answered:\n${w.lines.join("\n")}`);
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      if (res.ok) return;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      throw new Error(`the app did not answer within ${ms} ms:\n${w.lines.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Writes records one after the other, as fast as the app answers, until the app stops answering
 * (it was stopped) or `maxMs` passed. Returns the writes acknowledged with a 201.
 */
async function writeUntilDown(url: string, tag: string, maxMs = 60_000): Promise<Ack[]> {
  const acks: Ack[] = [];
  const deadline = Date.now() + maxMs;
  for (let n = 0; Date.now() < deadline; n++) {
    const body = `${tag}-${n}`;
    try {
      const res = await fetch(`${url}/records`, { method: "POST", body });
      const text = await res.text();
      if (res.status !== 201) break;
      acks.push({ id: (JSON.parse(text) as { id: number }).id, body });
    } catch {
      break; // refused or reset: the machine is going down
    }
  }
  return acks;
}

/** Returns the acks whose id and text are not both in `records` of `db`; throws if it cannot open. */
export function missingAcks(db: string, acks: Ack[]): Ack[] {
  if (acks.length === 0) return [];
  const conn = new DatabaseSync(db, { readOnly: true });
  try {
    const rows = conn.prepare("SELECT id, body FROM records").all() as {
      id: number;
      body: string;
    }[];
    const have = new Map(rows.map((r) => [Number(r.id), r.body]));
    return acks.filter((a) => have.get(a.id) !== a.body);
  } finally {
    conn.close();
  }
}

/** Stops a machine that a failed step left running: SIGTERM, then SIGKILL to it and its app. */
async function stopMachine(w: RunningLifeboat): Promise<void> {
  const app = events(w.lines).find((e) => e.event === "child_started")?.pid;
  try {
    w.proc.kill("SIGTERM");
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      w.proc.kill("SIGKILL");
    } catch { /* already gone */ }
    try {
      if (typeof app === "number") Deno.kill(app, "SIGKILL");
    } catch { /* already gone */ }
  }, 10_000);
  await w.proc.status;
  clearTimeout(timer);
}

/**
 * Runs `machines` machines one after the other against the store in `env` and returns what
 * happened; lost writes and wrong exit codes are reported, not thrown. Throws (after stopping the
 * machine it started) only when a machine cannot be brought up or observed at all.
 */
export async function runLifecycle(o: LifecycleOptions): Promise<LifecycleStats> {
  const { seed, random: rand } = o.seed === undefined
    ? testRandom("LIFEBOAT_LIFECYCLE_SEED")
    : { seed: o.seed, random: seededRandom(o.seed) };
  const [minMs, maxMs] = o.writeMs ?? [500, 3000];
  const log = o.log ?? (() => {});
  const reports: MachineReport[] = [];
  let previous: Ack[] = [];

  for (let machine = 1; machine <= o.machines; machine++) {
    const home = `${o.dir}/machine-${machine}`;
    await Deno.mkdir(home, { recursive: true }); // the fresh, empty root file system
    const files = (o.dbs ?? ["app.db"]).map((f) => `${home}/data/${f}`);
    // The app binds a port of the kernel's choice (PORT=0) and says which.
    const { w, metricsPort } = await spawnWithMetrics(["watch", "--", ...EXAMPLE_APP_CMD], {
      ...o.env,
      LIFEBOAT_DB: files.join(","),
      LIFEBOAT_INTERVAL: o.interval ?? "1s",
      LIFEBOAT_LOG_FORMAT: "json",
      FLY_MACHINE_ID: `machine-${machine}`,
      PORT: "0",
      HOST: "127.0.0.1",
    });
    let report: MachineReport;
    try {
      const listening = await w.waitForLine(/example app listening on (http:\/\/\S+:\d+) /);
      const url = /(http:\/\/\S+:\d+) /.exec(listening)![1];
      await waitHealthy(url, w);
      const lost = files.reduce((n, f) => n + missingAcks(f, previous).length, 0);
      const sigtermAfterMs = Math.round(minMs + rand() * (maxMs - minMs));
      const writing = writeUntilDown(url, `m${machine}`);
      await new Promise((r) => setTimeout(r, sigtermAfterMs / 2));
      const scrape = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      const metrics = await scrape.text();
      await new Promise((r) => setTimeout(r, sigtermAfterMs / 2));
      w.proc.kill("SIGTERM");
      const acks = await writing;
      const res = await w.done();
      const evs = events(res.lines);
      const restore = evs.find((e) => String(e.event).startsWith("restore_"));
      report = {
        machine,
        restore: restore?.event as string | undefined,
        restoreMs: typeof restore?.ms === "number" ? restore.ms : undefined,
        acked: acks.length,
        lost,
        code: res.code,
        sigtermAfterMs,
        backups: evs.filter((e) => e.event === "backup_finished").length,
        metrics,
        lines: res.lines,
      };
      previous = acks;
    } catch (err) {
      await stopMachine(w);
      throw err;
    }
    reports.push(report);
    log(
      `machine ${machine}: ${report.restore} in ${report.restoreMs} ms, ${report.acked} acked, ` +
        `${report.lost} lost, SIGTERM after ${report.sigtermAfterMs} ms, ` +
        `${report.backups} backups, exit ${report.code}`,
    );
  }

  // The last machine's writes: checked on one more (restore-only) machine.
  const checks = (o.dbs ?? ["app.db"]).map((f) => `${o.dir}/check/${f}`);
  const r = await runLifeboat(["restore", ...checks.flatMap((c) => ["--db", c])], o.env);
  if (r.code !== 0) throw new Error(`the final restore failed (${r.code}):\n${r.stderr}`);
  const lastLost = checks.reduce((n, c) => n + missingAcks(c, previous).length, 0);

  return {
    machines: reports.length,
    acked: reports.reduce((n, m) => n + m.acked, 0),
    lost: reports.reduce((n, m) => n + m.lost, 0) + lastLost,
    restoreMs: reports.flatMap((m) =>
      m.restore === "restore_finished" && m.restoreMs !== undefined ? [m.restoreMs] : []
    ),
    seed,
    reports,
  };
}
