/** How long each phase of one operation took, for one debug line; phases may overlap. */

/** A phase's name and its total milliseconds, in the order phases first ended. */
export type PhaseTimes = Record<string, number>;

/** Collects the durations of an operation's phases (wall time, `performance.now`). */
export class Phases {
  readonly #ms = new Map<string, number>();

  /** Runs `fn` and adds its duration to `name`, whether it resolves or throws (rethrown as is). */
  async time<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      this.add(name, performance.now() - t0);
    }
  }

  /** Adds `ms` to phase `name`; never throws. */
  add(name: string, ms: number): void {
    this.#ms.set(name, (this.#ms.get(name) ?? 0) + ms);
  }

  /** Every phase's whole milliseconds so far; never throws. */
  times(): PhaseTimes {
    return Object.fromEntries([...this.#ms].map(([k, v]) => [k, Math.round(v)]));
  }

  /** The phases as one short text: `list 12 ms, snapshot 310 ms, …`; never throws. */
  toString(): string {
    return Object.entries(this.times()).map(([k, v]) => `${k} ${v} ms`).join(", ");
  }
}
