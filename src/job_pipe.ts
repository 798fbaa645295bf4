/**
 * The pipe between `watch` and a job process it starts (`commands/isolated.ts`, `job.ts`): one
 * JSON message per line, each way. The job reads its request from stdin, then ABORT_MESSAGE; EOF
 * on stdin means the parent is gone. It answers on stdout; its log lines go to stderr as usual.
 */
import { exitCodeOf, LifeboatError, oneLine } from "./errors.ts";

/** The hidden first argument that makes lifeboat a job process (never shown in help). */
export const JOB_ARG = "--lifeboat-job";

/** The message the parent writes to ask a job to stop (with `reason`: why, in words). */
export const ABORT_MESSAGE = { abort: true } as const;

const encoder = new TextEncoder();

/** One message as one line's bytes; throws only for a value JSON cannot hold (a bug). */
export function encodeLine(message: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(message) + "\n");
}

/** The lines of `stream` (UTF-8), without their line breaks; ends at EOF, the last line too. */
export async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let rest = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    const parts = (rest + chunk).split("\n");
    rest = parts.pop()!;
    yield* parts;
  }
  if (rest) yield rest;
}

/** A failure as it crosses the pipe: the line `oneLine` printed and the exit code. */
export interface WireError {
  line: string;
  code: number;
}

/** A failure as the job process sends it: its one line and its exit code; never throws. */
export function toWire(err: unknown): WireError {
  return { line: oneLine(err), code: exitCodeOf(err) };
}

/** The error a job process reported, rebuilt so that `oneLine` and `exitCodeOf` give the same. */
export function relayedError(e: WireError): Error {
  return new LifeboatError(e.line, "", e.code);
}
