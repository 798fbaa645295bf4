/**
 * Sizes of the reliability tests (soak, crash, busy, lifecycle): small when run alone (`deno test -A
 * tests/reliability/`); full in `deno task test:reliability` (LIFEBOAT_TEST_SIZE=full). The
 * test's own variable (LIFEBOAT_SOAK_MACHINES, …) overrides either.
 */

/** True in `deno task test:reliability`. */
export const FULL_SIZE = Deno.env.get("LIFEBOAT_TEST_SIZE") === "full";

/** The value of `env` when set, else `full` or `small` by LIFEBOAT_TEST_SIZE. */
export function testSize(env: string, small: number, full: number): number {
  const raw = Deno.env.get(env);
  const n = raw ? Number(raw) : FULL_SIZE ? full : small;
  if (!Number.isFinite(n) || n < 0) throw new Error(`${env}=${raw} is not a size`);
  return n;
}
