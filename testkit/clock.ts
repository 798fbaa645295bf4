/** An injectable clock for tests: time moves only when the test (or a sleep) moves it. */
import type { Clock } from "../src/clock.ts";

/** A clock that can be set, shifted and advanced; `sleep` advances it and returns at once. */
export interface TestClock extends Clock {
  /** Sets the current time (ms since the epoch): a clock stepped by NTP, or another machine's. */
  set(ms: number): void;
  /** Moves the clock forward by `ms`. */
  advance(ms: number): void;
  /** Every sleep requested so far, in ms. */
  readonly slept: number[];
}

/** Returns a TestClock starting at `start` (default: the real time now). */
export function testClock(start: number = Date.now()): TestClock {
  let now = start;
  const slept: number[] = [];
  return {
    slept,
    now: () => now,
    set: (ms) => void (now = ms),
    advance: (ms) => void (now += ms),
    sleep: (ms) => {
      slept.push(ms);
      now += ms;
      return Promise.resolve();
    },
  };
}
