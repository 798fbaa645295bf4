/** Captures lifeboat's log records in memory, for tests that call commands in-process. */
import { configure, type LogRecord, reset } from "@logtape/logtape";

/** Records logged since `captureLogs`, and their `event` properties. */
export interface CapturedLogs {
  records: LogRecord[];
  /** The records whose `event` property equals `event`. */
  withEvent(event: string): LogRecord[];
  /** Forgets what was captured so far. */
  clear(): void;
}

/** Sends every lifeboat log record (debug and up) to memory instead of stderr; the last call wins. */
export async function captureLogs(): Promise<CapturedLogs> {
  const records: LogRecord[] = [];
  await reset();
  await configure({
    reset: true,
    sinks: { memory: (r) => records.push(r) },
    loggers: [
      { category: ["lifeboat"], lowestLevel: "debug", sinks: ["memory"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["memory"] },
    ],
  });
  return {
    records,
    withEvent: (event) => records.filter((r) => r.properties.event === event),
    clear: () => void records.splice(0),
  };
}
