/** A signal source for commands run in-process: the test fires SIGTERM by hand. */
import type { SignalSource } from "../src/signals.ts";

/** A signal source the test fires by hand (`send()`: SIGTERM to whoever listens). */
export function manualSignals(): SignalSource & { send(): void } {
  let fire: ((sig: Deno.Signal) => void) | undefined;
  return {
    onSignal(fn) {
      fire = fn;
      return () => (fire = undefined);
    },
    send: () => fire?.("SIGTERM"),
  };
}
