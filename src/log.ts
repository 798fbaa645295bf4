/** Logging: one line per event on stderr, as text or JSON, via @logtape/logtape. */
import { AsyncLocalStorage } from "node:async_hooks";
import {
  configure,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
  reset,
  type Sink,
} from "@logtape/logtape";
import { redactLine } from "./redact.ts";

/** How log lines are written. */
export interface LogSettings {
  format: "json" | "text";
  level: LogLevel;
}

/** Returns the logger for one part of lifeboat (`backup`, `restore`, `watch`, …). */
export function logger(part: string): Logger {
  return getLogger(["lifeboat", part]);
}

function renderMessage(record: LogRecord): string {
  return record.message.map((part, i) => (i % 2 === 0 ? part : plain(part))).join("");
}

function plain(value: unknown): string {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.message;
  return JSON.stringify(value) ?? String(value);
}

/**
 * Formats a record as one text line: time, level, part, message. With several databases the
 * part carries the database's name (`backup[queue]`), from the `db` label of `withDbLabel`.
 */
export function textLine(record: LogRecord): string {
  const time = new Date(record.timestamp).toISOString();
  const level = record.level.toUpperCase().padEnd(7);
  const db = record.properties.db;
  // A label is a store name; a few events carry the database's path under `db` instead.
  const label = typeof db === "string" && !db.includes("/") ? `[${db}]` : "";
  const part = record.category.slice(1).join(".") + label;
  return `${time} ${level} ${part}: ${renderMessage(record)}`.replace(/\n/g, " ");
}

/** Formats a record as one JSON object: time, level, part, msg and the event's properties. */
export function jsonLine(record: LogRecord): string {
  const props: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record.properties)) {
    props[k] = v instanceof Error ? v.message : v;
  }
  return JSON.stringify({
    time: new Date(record.timestamp).toISOString(),
    level: record.level,
    part: record.category.slice(1).join("."),
    msg: renderMessage(record),
    ...props,
  });
}

const encoder = new TextEncoder();

/** Writes one line to stderr, whole, after removing every known secret (see redact.ts). */
export function printLine(line: string): void {
  const bytes = encoder.encode(redactLine(line) + "\n");
  for (let off = 0; off < bytes.length;) off += Deno.stderr.writeSync(bytes.subarray(off));
}

/** Sets up logging for this process; safe to call again (the last call wins). */
export async function setupLogging(settings: LogSettings): Promise<void> {
  const format = settings.format === "json" ? jsonLine : textLine;
  const stderr: Sink = (record) => printLine(format(record));
  await reset();
  await configure({
    reset: true,
    contextLocalStorage: new AsyncLocalStorage(),
    sinks: { stderr },
    loggers: [
      { category: ["lifeboat"], lowestLevel: settings.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Whether lines about a process's own setup (credentials assumed) are routine (debug). */
let routineSetup = false;

/**
 * Makes this process's setup lines debug, not info: in watch's job processes after the restore,
 * one per interval would otherwise repeat what the first said. Never throws.
 */
export function markSetupRoutine(): void {
  routineSetup = true;
}

/** The level of a setup line: "info", or "debug" once markSetupRoutine was called. */
export function setupLevel(): "info" | "debug" {
  return routineSetup ? "debug" : "info";
}
