/** Runs lifeboat as a separate process exactly as the compiled binary would run (same permissions). */
import assert from "node:assert/strict";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");

/** The `--allow-*` flags of deno.json's task `name` (fails loudly when the task is missing). */
export function taskPermissions(name: string): string[] {
  const task = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).tasks[name];
  if (typeof task !== "string") throw new Error(`deno.json has no task ${name}`);
  return task.split(/\s+/).filter((w) => /^--allow-/.test(w));
}

/** The permission flags of the compiled binary (`deno task compile`). */
export const LIFEBOAT_PERMISSIONS: string[] = taskPermissions("compile");

/**
 * The command that runs lifeboat: the executable in LIFEBOAT_BIN when set (the compiled binary,
 * e.g. `LIFEBOAT_BIN=./lifeboat deno task test:compat`), else `deno run` with exactly the
 * permission flags `deno compile` bakes into the binary.
 */
export const LIFEBOAT_CMD = Deno.env.get("LIFEBOAT_BIN")
  ? [resolve(Deno.env.get("LIFEBOAT_BIN")!)]
  : [
    Deno.execPath(),
    "run",
    "-q",
    `--config=${ROOT}/deno.json`,
    ...LIFEBOAT_PERMISSIONS,
    `${ROOT}/main.ts`,
  ];

/** The command that runs the example app (examples/app.ts) with `deno task example`'s flags. */
export const EXAMPLE_APP_CMD = [
  Deno.execPath(),
  "run",
  "-q",
  `--config=${ROOT}/deno.json`,
  ...taskPermissions("example"),
  `${ROOT}/examples/app.ts`,
];

/** The result of a finished lifeboat run. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** Non-empty stderr lines. */
  lines: string[];
}

/** Environment shared by every lifeboat run in tests: text logs, no EC2 metadata, no AWS keys. */
export function baseEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/root",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
    AWS_EC2_METADATA_DISABLED: "true",
    LIFEBOAT_LOG_FORMAT: "text",
    ...extra,
  };
}

/**
 * The lifeboat command for `args`, with exactly `env` (nothing inherited) and piped output;
 * `wrap` runs it under another program (`bash -c 'ulimit …; exec "$@"' bash`, `unshare …`).
 */
function lifeboatCommand(args: string[], env: Record<string, string>, wrap: string[] = []) {
  const cmd = [...wrap, ...LIFEBOAT_CMD, ...args];
  return new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: cleanEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
}

/** Returns lifeboat's temporary files left in `dir` (there should be none after any run). */
export function tempsLeft(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((x) => /lifeboat-.*\.tmp/.test(x));
}

/** Yields a byte stream's text one line at a time (without the newline), the last one too. */
export async function* textLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buf = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buf += chunk;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/** Runs `lifeboat ARGS` to completion with exactly `env` (nothing inherited), under `wrap`. */
export async function runLifeboat(
  args: string[],
  env: Record<string, string>,
  wrap: string[] = [],
): Promise<RunResult> {
  const out = await lifeboatCommand(args, env, wrap).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr,
    lines: stderr.split("\n").filter((l) => l.trim() !== ""),
  };
}

/**
 * Asserts a failed run exited `code` and printed exactly one line, matching `re`, and no stack
 * trace; returns that line. With `among`, only the stderr lines it picks count (e.g. error lines
 * among debug logs).
 */
export function assertOneLineError(
  r: RunResult,
  code: number,
  re: RegExp,
  among: (line: string) => boolean = () => true,
): string {
  assert.equal(r.code, code, r.stderr);
  const lines = r.lines.filter(among);
  assert.equal(lines.length, 1, `expected one line, got:\n${r.stderr}`);
  assert.match(lines[0], re);
  assert.doesNotMatch(r.stderr, /^\s+at |\.ts:\d+:\d+/m, "stack trace printed");
  return lines[0];
}

/** Runs `lifeboat backup --db DB` and fails the test, showing stderr, unless it exits 0. */
export async function backupOk(db: string, env: Record<string, string>): Promise<RunResult> {
  const r = await runLifeboat(["backup", "--db", db], env);
  if (r.code !== 0) throw new Error(`lifeboat backup exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** Runs `lifeboat restore --db DB` and fails the test, showing stderr, unless it exits 0. */
export async function restoreOk(db: string, env: Record<string, string>): Promise<RunResult> {
  const r = await runLifeboat(["restore", "--db", db], env);
  if (r.code !== 0) throw new Error(`lifeboat restore exited ${r.code}:\n${r.stderr}`);
  return r;
}

/** A lifeboat process left running (for `watch`), with its stderr collected as it comes. */
export interface RunningLifeboat {
  proc: Deno.ChildProcess;
  /** Lines of stderr received so far. */
  lines: string[];
  /** Resolves when a stderr or stdout line matching `re` has arrived; rejects after `ms`. */
  waitForLine(re: RegExp, ms?: number): Promise<string>;
  /** Resolves once `count` stderr lines match `re`; rejects after `ms`. */
  waitForCount(re: RegExp, count: number, ms?: number): Promise<void>;
  /** Resolves with the exit code and all stderr once the process has exited. */
  done(): Promise<RunResult>;
  /** Sends `sig` (default SIGTERM), then resolves as `done` does. */
  stop(sig?: Deno.Signal): Promise<RunResult>;
}

/** Starts `lifeboat ARGS` in the background with exactly `env`, under `wrap`. */
export function spawnLifeboat(
  args: string[],
  env: Record<string, string>,
  wrap: string[] = [],
): RunningLifeboat {
  const proc = lifeboatCommand(args, env, wrap).spawn();
  const lines: string[] = [];
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const pump = async (stream: ReadableStream<Uint8Array>, sink: string[]) => {
    for await (const line of textLines(stream)) {
      if (line.trim() === "") continue;
      sink.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  };
  const stderrDone = pump(proc.stderr, lines);
  const stdoutChunks: string[] = [];
  const stdoutDone = pump(proc.stdout, stdoutChunks);
  return {
    proc,
    lines,
    waitForLine(re, ms = 30_000) {
      const hit = [...lines, ...stdoutChunks].find((l) => re.test(l));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.findIndex((w) => w.re === re), 1);
          reject(new Error(`no line matching ${re} within ${ms} ms; got:\n${lines.join("\n")}`));
        }, ms);
        waiters.push({
          re,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
    async waitForCount(re, count, ms = 30_000) {
      const deadline = Date.now() + ms;
      while (lines.filter((l) => re.test(l)).length < count) {
        if (Date.now() > deadline) {
          throw new Error(`fewer than ${count} lines matching ${re}; got:\n${lines.join("\n")}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async done() {
      const status = await proc.status;
      await Promise.all([stderrDone, stdoutDone]);
      return {
        code: status.code,
        stdout: stdoutChunks.join("\n"),
        stderr: lines.join("\n"),
        lines,
      };
    },
    stop(sig: Deno.Signal = "SIGTERM") {
      proc.kill(sig);
      return this.done();
    },
  };
}

function cleanEnv(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== ""));
}

/**
 * Starts `cmd` (stdout piped, stderr inherited) and waits until its stdout shows `marker`;
 * returns the process, the reader of its stdout and what it printed so far. Throws if it exits
 * first.
 */
export async function startUntil(cmd: string[], marker: string) {
  const proc = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes(marker)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited before printing ${marker}`);
    seen += value;
  }
  return { proc, reader, seen };
}
