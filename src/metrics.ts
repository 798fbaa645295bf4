/**
 * Prometheus metrics for `watch`: a small registry of what the restore and the backups did,
 * rendered as Prometheus text (`metrics_server.ts` serves it). It defines the outcomes it
 * counts; the commands' results fit them.
 */
import type { Clock } from "./clock.ts";

/** How one periodic or final backup ended, as counted in `lifeboat_backups_total`. */
export type BackupOutcome = "uploaded" | "unchanged" | "skipped" | "failed" | "aborted";
/** How the restore at start ended, as shown by `lifeboat_restore_outcome`. */
export type RestoreOutcome = "restored" | "fresh" | "exists" | "failed";

/** What the metrics read from a successful backup (a command's result may carry more). */
export interface BackupRecord {
  outcome: "uploaded" | "unchanged";
  /** Duration in milliseconds and size of the snapshot in bytes. */
  ms: number;
  bytes: number;
  /** A backup by another writer found newest in the store, if one was. */
  foreign?: { machine: string };
}

/** What the metrics read from the restore at start (a command's result may carry more). */
export interface RestoreRecord {
  outcome: RestoreOutcome;
  ms: number;
  /** Size of the restored database; absent unless a backup was restored. */
  bytes?: number;
  /** How far the newest backup's order time was ahead of the local clock. */
  futureMs?: number;
}

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
   * age restarts; an existing database keeps counting from lifeboat's start. (Generic, so that a
   * command's result is taken as it is, with fields the metrics do not read.)
   */
  restored<R extends RestoreRecord>(r: R): void {
    this.#restore = {
      outcome: r.outcome,
      ms: r.ms,
      bytes: r.bytes ?? 0,
      futureMs: r.futureMs ?? 0,
    };
    if (r.outcome === "restored" || r.outcome === "fresh") this.#protectedAt = this.#clock.now();
  }

  /** Records a successful backup (uploaded, or unchanged since the last one): the age restarts. */
  backedUp(r: BackupRecord): void {
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
