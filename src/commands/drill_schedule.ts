/**
 * `watch`'s restore drills over time: when each database's next one is due, and what follows a
 * failed one. The drill itself (`drill.ts`) runs where `watch`'s jobs run; this module loads no
 * store code, so `watch`'s long-lived process can hold it (issue #22).
 */
import type { Clock } from "../clock.ts";
import { formatDuration } from "../duration.ts";
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import type { DbMetrics } from "../metrics.ts";
import type { DrillOptions, DrillResult } from "./drill.ts";
import { withDbLabel } from "./several.ts";

const log = logger("drill");

/** One sentence for a person: what the drill found, and for a failure which kind it was. */
export function describeDrill(r: DrillResult): string {
  const not = "the backup is not known to be damaged";
  switch (r.outcome) {
    case "verified":
      return `verified ${r.key} (${r.bytes} bytes, as restore would) in ${formatDuration(r.ms)}`;
    case "damaged":
      return `DAMAGED: ${r.key} failed verification (${r.problem}): restore would skip it`;
    case "missing":
      return `MISSING: ${r.problem}`;
    case "unreachable":
      return `UNREACHABLE: ${r.key ? `${r.key}: ` : ""}${r.problem}; ${not}`;
    case "local":
      return `NOT VERIFIED on this machine: ${r.key ? `${r.key}: ` : ""}${r.problem}; ${not}`;
  }
}

/** One database as the drill schedule sees it. */
export interface DrillTarget {
  o: DrillOptions;
  /** The store's location, for the log line of a failed drill. */
  location: string;
  metrics: DbMetrics;
  /** Runs the drill (`drillOnce`, in a job process or in this one). */
  drill: (signal: AbortSignal) => Promise<DrillResult>;
  /** Backs the database up at once, never skipped as unchanged; never throws. */
  backUpNow(signal: AbortSignal): Promise<unknown>;
}

/** When a database's next drill is due. */
interface Due {
  /** Due only once the database has had more successful backups than this. */
  afterBackups: number;
  /** Due only from this time on (the clock's milliseconds). */
  notBefore: number;
}

/**
 * `watch`'s restore drills: when each database's next one is due, and running them. A database
 * is first drilled after its first successful backup of this process; after a drill that passed,
 * `intervalMs` later; after one that failed, after its next successful backup.
 */
export class DrillSchedule {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  readonly #due = new Map<DbMetrics, Due>();

  /** A schedule with `intervalMs` between drills of a database; 0 turns drills off. */
  constructor(intervalMs: number, clock: Clock) {
    this.#intervalMs = intervalMs;
    this.#clock = clock;
  }

  /**
   * Runs the drill of every database of `targets` that is due, one at a time, each under its
   * label: records it in its metrics, logs it (an error naming the key and what failed, and
   * whether the backup is damaged or the store could not be reached), and after a failure backs
   * the database up at once. Resolves when done, or soon after `signal` aborts; never throws.
   */
  async runDue(targets: readonly DrillTarget[], signal: AbortSignal): Promise<void> {
    if (this.#intervalMs <= 0) return;
    for (const t of targets) {
      if (signal.aborted) return;
      const due = this.#due.get(t.metrics) ?? { afterBackups: 0, notBefore: -Infinity };
      if (t.metrics.successfulBackups <= due.afterBackups) continue;
      if (this.#clock.now() < due.notBefore) continue;
      await withDbLabel(t.o.name, () => this.#drill(t, signal));
    }
  }

  async #drill(t: DrillTarget, signal: AbortSignal): Promise<void> {
    let r: DrillResult;
    try {
      r = await t.drill(signal);
    } catch (err) {
      if (signal.aborted) return; // stopped for shutdown: due again next time
      r = { outcome: "local", problem: oneLine(err), ms: 0 };
    }
    t.metrics.drilled(r);
    if (r.outcome === "verified") {
      this.#due.set(t.metrics, {
        afterBackups: -1,
        notBefore: this.#clock.now() + this.#intervalMs,
      });
      log.info("restore drill: {summary}", {
        event: "drill_verified",
        summary: describeDrill(r),
        key: r.key,
        bytes: r.bytes,
        ms: r.ms,
      });
      return;
    }
    this.#due.set(t.metrics, { afterBackups: t.metrics.successfulBackups, notBefore: -Infinity });
    log.error("restore drill: {summary}; taking a new backup now", {
      event: "drill_failed",
      summary: describeDrill(r),
      outcome: r.outcome,
      key: r.key,
      problem: r.problem,
      store: t.location,
      ms: r.ms,
    });
    await t.backUpNow(signal);
  }
}
