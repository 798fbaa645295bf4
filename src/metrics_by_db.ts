/**
 * Metrics for several databases: one `Metrics` per database, served together with a `db` label
 * on every sample (`lifeboat_backup_age_seconds{db="queue"}`). A lone database keeps its
 * unlabelled series.
 */
import type { Clock } from "./clock.ts";
import { Metrics, type MetricsSettings } from "./metrics.ts";

/** The metrics of every database of one `watch`; `render` merges them, labelled by name. */
export class MetricsByDb extends Metrics {
  readonly #each: Map<string, Metrics>;

  /** One registry per name in `names` (store names: letters, digits, `._-`). */
  constructor(clock: Clock, settings: MetricsSettings, names: readonly string[]) {
    super(clock, settings);
    this.#each = new Map(names.map((n) => [n, new Metrics(clock, settings)]));
  }

  /** The metrics of database `name`; throws for a name it was not built with (a bug). */
  of(name: string): Metrics {
    const m = this.#each.get(name);
    if (!m) throw new Error(`no metrics for database ${name}`);
    return m;
  }

  /** Every family once (HELP, TYPE), with each database's samples labelled `db="NAME"`. */
  override render(): string {
    const families = new Map<string, { head: string[]; samples: string[] }>();
    for (const [name, m] of this.#each) {
      let current: { head: string[]; samples: string[] } | undefined;
      for (const line of m.render().split("\n")) {
        const meta = /^# (HELP|TYPE) (\S+) /.exec(line);
        if (meta) {
          current = families.get(meta[2]);
          if (!current) families.set(meta[2], current = { head: [], samples: [] });
          if (current.head.length < 2) current.head.push(line);
          continue;
        }
        if (line === "" || !current) continue;
        current.samples.push(withLabel(line, name));
      }
    }
    return [...families.values()].map((f) => [...f.head, ...f.samples].join("\n") + "\n").join(
      "",
    );
  }
}

/** Adds `db="name"` as the first label of one sample line (`name{a="b"} 1` or `name 1`). */
function withLabel(sample: string, db: string): string {
  const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(sample);
  if (!m) return sample;
  const labels = [`db="${db}"`, ...(m[2] ? [m[2]] : [])].join(",");
  return `${m[1]}{${labels}} ${m[3]}`;
}
