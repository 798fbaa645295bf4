/** The injectable clock of tests: time moves only when the test (or a sleep) moves it. */
import type { Clock } from "../src/clock.ts";

/** A clock that can be set, shifted and advanced; `sleep` advances it. */
export interface TestClock extends Clock {
  /** Sets the current time (ms since the epoch): a clock stepped by NTP, or another machine's. */
  set(ms: number): void;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
  /** Every sleep requested so far, in ms. */
  readonly slept: number[];
}

/**
 * Returns a TestClock starting at `start` (default: the real time now). `sleep(ms)` moves it by
 * `ms` and returns at once, or, with `realMs`, after that much real time (or when its signal
 * aborts): a loop that sleeps on it (watch's) then still lets timers and I/O run.
 */
export function testClock(start: number = Date.now(), o: { realMs?: number } = {}): TestClock {
  let now = start;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    set: (ms) => void (now = ms),
    advance: (ms) => void (now += ms),
    sleep: (ms, signal) => {
      slept.push(ms);
      now += ms;
      if (o.realMs === undefined || signal?.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, o.realMs);
        signal?.addEventListener("abort", done, { once: true });
      });
    },
  };
}
