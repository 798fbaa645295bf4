/** Seeded randomness for tests and benchmarks: the same seed gives the same numbers everywhere. */

/** Returns a mulberry32 generator of numbers in [0, 1) for `seed`; never throws. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A test's random numbers and the seed that replays them. */
export interface TestRandom {
  seed: number;
  /** Numbers in [0, 1), from `seed`. */
  random: () => number;
  /** "seed N (ENV=N replays it)": for failure messages. */
  replay: string;
}

/**
 * The random numbers of one test: seeded from the environment variable `env` when set (to replay
 * a failure), else from the clock. Put `replay` in every failure message.
 */
export function testRandom(env = "LIFEBOAT_TEST_SEED"): TestRandom {
  const given = Deno.env.get(env);
  const seed = given ? Number(given) : Date.now() % 2 ** 31;
  if (!Number.isSafeInteger(seed)) throw new Error(`${env}=${given} is not an integer`);
  return { seed, random: seededRandom(seed), replay: `seed ${seed} (${env}=${seed} replays it)` };
}
