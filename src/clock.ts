/** Time as a dependency, so tests inject it instead of faking timers. */

/** The source of time for schedulers and key names. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The longest delay a timer takes (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The wall clock; `sleep` never keeps the process alive after an abort, and waits in steps of at
 * most MAX_TIMER_MS, so no delay can overflow the timer.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const end = Date.now() + ms;
      let timer = setTimeout(step, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      function step() {
        const left = end - Date.now();
        if (left > 0) timer = setTimeout(step, Math.min(left, MAX_TIMER_MS));
        else done();
      }
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      signal?.addEventListener("abort", done, { once: true });
    }),
};
