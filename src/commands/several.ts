/** Running one command over a run's databases: bounded concurrency, labels, one verdict. */
import { withContext } from "@logtape/logtape";
import { EXIT_FAILURE, exitCodeOf, LifeboatError, oneLine } from "../errors.ts";
import { logger } from "../log.ts";

const log = logger("cli");

/** Runs `fn` with every log line inside it labelled `db=label` (nothing added without a label). */
export function withDbLabel<R>(label: string | undefined, fn: () => Promise<R>): Promise<R> {
  return label === undefined ? fn() : withContext({ db: label }, fn);
}

/**
 * Calls `fn` on every item, at most `limit` at once, in order of the items; resolves with the
 * results in the same order. A rejection is passed on only after every call has settled.
 */
export async function mapBounded<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<PromiseSettledResult<R>>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: "fulfilled", value: await fn(items[i]) };
      } catch (reason) {
        results[i] = { status: "rejected", reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  const failed = results.find((r) => r.status === "rejected");
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<R>).value);
}

/**
 * Runs `fn` for every database of `dbs` (at most `limit` at once), each under its name as the
 * log label; one failure never stops the others. Resolves with the results in order when all
 * succeeded. A lone database's error is rethrown as it is; with several, each failure is logged
 * under its name and one error (exit code: the highest) names every database that failed, with
 * `hint`.
 */
export async function forEachDatabase<T extends { name: string; path: string }, R>(
  dbs: readonly T[],
  limit: number,
  what: string,
  fn: (db: T) => Promise<R>,
  hint = `The other databases' ${what}s stand; fix the cause and run again`,
): Promise<R[]> {
  if (dbs.length === 1) return [await withDbLabel(dbs[0].name, () => fn(dbs[0]))];
  const failures: { name: string; err: unknown }[] = [];
  const results = await mapBounded(dbs, limit, (db) =>
    withDbLabel(db.name, async () => {
      try {
        return await fn(db);
      } catch (err) {
        log.error("{what} of {database} failed: {error}", {
          event: "database_failed",
          what,
          database: db.path,
          error: oneLine(err),
        });
        failures.push({ name: db.name, err });
        return undefined;
      }
    }));
  if (failures.length === 0) return results as R[];
  const code = Math.max(EXIT_FAILURE, ...failures.map((f) => exitCodeOf(f.err)));
  throw new LifeboatError(
    `${what} failed for ${failures.length} of ${dbs.length} databases (` +
      failures.map((f) => `${f.name}: ${oneLine(f.err)}`).join("; ") + ")",
    hint,
    code,
  );
}
