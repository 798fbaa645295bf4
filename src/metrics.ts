/**
 * Prometheus metrics for `watch`: one registry of what each database's restore, backups and
 * restore drills did, rendered as Prometheus text with a `db` label on every sample
 * (`metrics_server.ts` serves it). It defines the outcomes it counts; the commands' results fit
 * them.
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
  /** Keys passed over for ordering that this process had not reported before. */
  ignored?: readonly string[];
  /** What retention did after it: problems, and whether the store turned out to have no tags. */
  retention?: { problems: readonly string[]; taggingUnsupported?: boolean };
}

/** What the metrics read from the restore at start (a command's result may carry more). */
export interface RestoreRecord {
  outcome: RestoreOutcome;
  ms: number;
  /** Size of the restored database; absent unless a backup was restored. */
  bytes?: number;
  /** How far the newest backup's order time was ahead of the local clock. */
  futureMs?: number;
  /** Newer backups that failed verification and were passed over. */
  bypassed?: readonly unknown[];
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
  /** Milliseconds between restore drills (LIFEBOAT_DRILL_INTERVAL); 0 or absent: no drills. */
  drillInterval?: number;
}

/**
 * How one restore drill ended, as counted in `lifeboat_drill_failures_total` (every outcome but
 * "verified"): damaged (the backup failed verification), missing (the store lists no backup),
 * unreachable (the store could not be read: the backup is not known to be damaged), local (this
 * machine could not run the check: disk space, its temporary file).
 */
export type DrillOutcome = "verified" | "damaged" | "missing" | "unreachable" | "local";
/** Every DrillOutcome that is a failure, in the order the metrics list them. */
export const DRILL_FAILURES: readonly Exclude<DrillOutcome, "verified">[] = [
  "damaged",
  "missing",
  "unreachable",
  "local",
];

/** What the metrics read from a restore drill (a command's result may carry more). */
export interface DrillRecord {
  outcome: DrillOutcome;
  /** The backup it read; absent when the store could not be listed or held none. */
  key?: string;
  ms: number;
}

/**
 * The registry of one `watch` run: one `DbMetrics` per database, rendered as one exposition in
 * which every sample carries the database's name as its `db` label, for one database as for
 * several (`lifeboat_backup_age_seconds{db="app"}`). Settings are repeated per database, so an
 * alert rule can compare them sample by sample.
 */
export class Metrics {
  readonly #clock: Clock;
  readonly #settings: Required<MetricsSettings>;
  readonly #dbs = new Map<string, DbMetrics>();
  readonly #store = { taggingUnsupported: false };

  /** Registers one database per name of `names` (their backup age counts from now). */
  constructor(clock: Clock, settings: MetricsSettings, names: readonly string[] = []) {
    this.#clock = clock;
    this.#settings = {
      interval: settings.interval,
      shutdownTimeoutMs: settings.shutdownTimeoutMs,
      drillInterval: settings.drillInterval ?? 0,
    };
    for (const name of names) this.of(name);
  }

  /** The metrics of database `name`, registered on first use; never throws. */
  of(name: string): DbMetrics {
    let m = this.#dbs.get(name);
    if (!m) this.#dbs.set(name, m = new DbMetrics(this.#clock, this.#store));
    return m;
  }

  /**
   * Returns every metric in the Prometheus text exposition format (version 0.0.4): each family
   * once, with one sample per database (and label value) in the order the databases were
   * registered. Reads the clock: the backup age is computed at scrape time.
   */
  render(): string {
    const dbs = [...this.#dbs].map(([name, m]) => ({ name, values: m.values }));
    return FAMILIES.map((f) => {
      const samples = dbs.flatMap(({ name, values }) =>
        f.samples(values, { ...this.#settings, ...this.#store }).map(([labels, value]): Sample => [
          { db: name, ...labels },
          value,
        ])
      );
      return family(f.name, f.type, f.help, samples);
    }).join("");
  }
}

/**
 * What one database's restore and backups did (and its restore drills), for `Metrics`.
 * Recording never throws.
 */
export class DbMetrics {
  readonly #clock: Clock;
  /** When the database last matched what the store holds: restore, or a successful backup. */
  #protectedAt: number;
  #lastSuccessAt?: number;
  #last?: { ms: number; bytes: number };
  #backups = new Map<BackupOutcome, number>(BACKUP_OUTCOMES.map((o) => [o, 0]));
  #restore?: { outcome: RestoreOutcome; ms: number; bytes: number; futureMs: number };
  #problem?: string;
  #foreign?: { machine: string; at: number };
  #drillOkAt?: number;
  #drillOkMs = 0;
  #drillFailures = new Map<DrillOutcome, number>(DRILL_FAILURES.map((o) => [o, 0]));
  #lastDrill?: { key: string; outcome: DrillOutcome };
  #bypassed = 0;
  #ignoredKeys = 0;
  #retentionFailures = 0;
  /** What the whole process learned about the store (shared by every database). */
  readonly #store: { taggingUnsupported: boolean };

  /**
   * Starts counting the backup age from now (until a restore or a backup says otherwise);
   * `store` is what every database of the process shares about the store.
   */
  constructor(clock: Clock, store = { taggingUnsupported: false }) {
    this.#clock = clock;
    this.#protectedAt = clock.now();
    this.#store = store;
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
    this.#bypassed = r.bypassed?.length ?? 0;
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
    this.#ignoredKeys += r.ignored?.length ?? 0;
    this.#retentionFailures += r.retention?.problems.length ?? 0;
    if (r.retention?.taggingUnsupported) this.#store.taggingUnsupported = true;
  }

  /** Records a backup that did not happen or did not finish, and why (for the stale-backup log). */
  notBackedUp(outcome: "skipped" | "failed" | "aborted", problem: string): void {
    this.#count(outcome);
    this.#problem = problem;
  }

  /** Records how a restore drill ended (see DrillOutcome). */
  drilled(r: DrillRecord): void {
    this.#lastDrill = { key: r.key ?? "", outcome: r.outcome };
    if (r.outcome === "verified") {
      this.#drillOkAt = this.#clock.now();
      this.#drillOkMs = r.ms;
    } else this.#drillFailures.set(r.outcome, (this.#drillFailures.get(r.outcome) ?? 0) + 1);
  }

  /** Milliseconds since the database last matched a backup in the store (never negative). */
  backupAgeMs(): number {
    return Math.max(0, this.#clock.now() - this.#protectedAt);
  }

  /** How many backups succeeded (uploaded or unchanged) since this process started. */
  get successfulBackups(): number {
    return (this.#backups.get("uploaded") ?? 0) + (this.#backups.get("unchanged") ?? 0);
  }

  /** Why the last backup did not succeed; undefined after a success. */
  get lastProblem(): string | undefined {
    return this.#problem;
  }

  /** A snapshot of what `Metrics.render` shows for this database (the age read from the clock). */
  get values(): DbValues {
    return {
      age: this.backupAgeMs(),
      lastSuccessAt: this.#lastSuccessAt,
      last: this.#last,
      backups: this.#backups,
      restore: this.#restore,
      foreign: this.#foreign,
      drillOkAt: this.#drillOkAt,
      drillOkMs: this.#drillOkMs,
      drillFailures: this.#drillFailures,
      lastDrill: this.#lastDrill,
      bypassed: this.#bypassed,
      ignoredKeys: this.#ignoredKeys,
      retentionFailures: this.#retentionFailures,
    };
  }

  #count(outcome: BackupOutcome): void {
    this.#backups.set(outcome, (this.#backups.get(outcome) ?? 0) + 1);
  }
}

/** What one database's samples are made of (see DbMetrics.values). */
interface DbValues {
  age: number;
  lastSuccessAt?: number;
  last?: { ms: number; bytes: number };
  backups: ReadonlyMap<BackupOutcome, number>;
  restore?: { outcome: RestoreOutcome; ms: number; bytes: number; futureMs: number };
  foreign?: { machine: string; at: number };
  drillOkAt?: number;
  drillOkMs: number;
  drillFailures: ReadonlyMap<DrillOutcome, number>;
  lastDrill?: { key: string; outcome: DrillOutcome };
  bypassed: number;
  ignoredKeys: number;
  retentionFailures: number;
}

/** The settings and what the process learned about the store, the same for every database. */
type Shared = Required<MetricsSettings> & { taggingUnsupported: boolean };

type Sample = [labels: Record<string, string>, value: number];

/** One metric family: its name, type, HELP text, and one database's samples (without `db`). */
interface Family {
  name: string;
  type: "gauge" | "counter";
  help: string;
  samples: (v: DbValues, shared: Shared) => Sample[];
}

const s = (ms: number) => ms / 1000;
/** The one sample of a family without labels of its own. */
const one = (value: number): Sample[] => [[{}, value]];

/** Every metric lifeboat serves, in the order of the exposition. */
const FAMILIES: Family[] = [
  {
    name: "lifeboat_backup_age_seconds",
    type: "gauge",
    help:
      "Seconds since the database last matched a backup in the store (the last successful backup, or the restore at start): the writes a crash would lose.",
    samples: (v) => one(s(v.age)),
  },
  {
    name: "lifeboat_backup_last_success_timestamp_seconds",
    type: "gauge",
    help:
      "Unix time of the last successful backup (uploaded or unchanged) of this process; 0 before the first.",
    samples: (v) => one(s(v.lastSuccessAt ?? 0)),
  },
  {
    name: "lifeboat_backup_last_duration_seconds",
    type: "gauge",
    help: "Duration of the last successful backup: snapshot, checksum and upload.",
    samples: (v) => one(s(v.last?.ms ?? 0)),
  },
  {
    name: "lifeboat_backup_last_bytes",
    type: "gauge",
    help: "Size of the database snapshot taken by the last successful backup.",
    samples: (v) => one(v.last?.bytes ?? 0),
  },
  {
    name: "lifeboat_backups_total",
    type: "counter",
    help:
      "Backups by outcome: uploaded, unchanged (identical to the last one, no upload), skipped (no database yet), failed, aborted (stopped for shutdown or cut short by LIFEBOAT_SHUTDOWN_TIMEOUT).",
    samples: (v) => BACKUP_OUTCOMES.map((o) => [{ outcome: o }, v.backups.get(o) ?? 0]),
  },
  {
    name: "lifeboat_restore_duration_seconds",
    type: "gauge",
    help: "Duration of the restore at start; 0 while it runs.",
    samples: (v) => one(s(v.restore?.ms ?? 0)),
  },
  {
    name: "lifeboat_restore_bytes",
    type: "gauge",
    help: "Size of the restored database; 0 unless a backup was restored.",
    samples: (v) => one(v.restore?.bytes ?? 0),
  },
  {
    name: "lifeboat_restore_outcome",
    type: "gauge",
    help:
      "1 for how the restore at start ended (restored, fresh: the store had no backup, exists: the database was already there, failed), 0 for the others.",
    samples: (v) => RESTORE_OUTCOMES.map((o) => [{ outcome: o }, v.restore?.outcome === o ? 1 : 0]),
  },
  {
    name: "lifeboat_newest_backup_future_seconds",
    type: "gauge",
    help:
      "How far the newest backup's order time was ahead of this machine's clock at restore (0 when it was not): above a few minutes, a clock is off.",
    samples: (v) => one(s(v.restore?.futureMs ?? 0)),
  },
  {
    name: "lifeboat_foreign_writer",
    type: "gauge",
    help:
      "1 once a backup written by another machine was found newest in the store since this process last looked: two writers share the store and one's writes will be lost.",
    samples: (v) => one(v.foreign ? 1 : 0),
  },
  {
    name: "lifeboat_foreign_writer_last_timestamp_seconds",
    type: "gauge",
    help: "Unix time another writer was last found newest in the store; 0 if never.",
    samples: (v) => one(v.foreign ? s(v.foreign.at) : 0),
  },
  {
    name: "lifeboat_drill_last_success_timestamp_seconds",
    type: "gauge",
    help:
      "Unix time of the last restore drill that read the newest backup back from the store and verified it as restore would; 0 before the first.",
    samples: (v) => one(s(v.drillOkAt ?? 0)),
  },
  {
    name: "lifeboat_drill_last_duration_seconds",
    type: "gauge",
    help: "Duration of the last successful restore drill; 0 before the first.",
    samples: (v) => one(s(v.drillOkMs)),
  },
  {
    name: "lifeboat_drill_failures_total",
    type: "counter",
    help:
      "Restore drills that failed, by reason: damaged (the newest backup failed verification), missing (the store lists no backup), unreachable (the store could not be read: the backup is not known to be damaged), local (this machine could not run the check: disk space, its temporary file).",
    samples: (v) => DRILL_FAILURES.map((o) => [{ reason: o }, v.drillFailures.get(o) ?? 0]),
  },
  {
    name: "lifeboat_drill_last_info",
    type: "gauge",
    help:
      "Always 1: the backup the last restore drill read (key, empty when it read none) and how the drill ended (outcome: verified, damaged, missing, unreachable, local; none before the first).",
    samples: (v) => [[{
      key: v.lastDrill?.key ?? "",
      outcome: v.lastDrill?.outcome ?? "none",
    }, 1]],
  },
  {
    name: "lifeboat_restore_bypassed_backups",
    type: "gauge",
    help:
      "Backups newer than the one restored at start that failed verification and were passed over: never marked superseded, shown by lifeboat list; above 0, a person should look at them.",
    samples: (v) => one(v.bypassed),
  },
  {
    name: "lifeboat_keys_ignored_total",
    type: "counter",
    help:
      "Keys in the database's places that are not lifeboat backups of it (no lifeboat metadata, or dated past the key scheme's end), passed over for ordering; each counted once.",
    samples: (v) => one(v.ignoredKeys),
  },
  {
    name: "lifeboat_retention_failures_total",
    type: "counter",
    help:
      "Retention steps after a backup that failed (marking the previous newest superseded, replacing the kept copy); each is tried again after the next backup.",
    samples: (v) => one(v.retentionFailures),
  },
  {
    name: "lifeboat_store_tagging_unsupported",
    type: "gauge",
    help:
      "1 once the store answered that it does not implement object tagging (Cloudflare R2): retention goes by prefix alone (LIFEBOAT_RETENTION).",
    samples: (_, c) => one(c.taggingUnsupported ? 1 : 0),
  },
  {
    name: "lifeboat_backup_interval_seconds",
    type: "gauge",
    help: "Time between periodic backups (LIFEBOAT_INTERVAL).",
    samples: (_, c) => one(s(c.interval)),
  },
  {
    name: "lifeboat_shutdown_timeout_seconds",
    type: "gauge",
    help: "Upper bound for the final backup (LIFEBOAT_SHUTDOWN_TIMEOUT).",
    samples: (_, c) => one(s(c.shutdownTimeoutMs)),
  },
  {
    name: "lifeboat_drill_interval_seconds",
    type: "gauge",
    help: "Time between restore drills (LIFEBOAT_DRILL_INTERVAL); 0 when drills are off.",
    samples: (_, c) => one(s(c.drillInterval)),
  },
];

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
