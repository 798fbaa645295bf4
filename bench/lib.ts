/**
 * Shared benchmark machinery: statistics, timed child processes with peak RSS, cleanup of
 * everything the bench starts, the S3 proxy that counts requests, and the environments for lifeboat,
 * the AWS CLI and the SDK. Every scenario script uses this module; none repeats it.
 */
import { DeleteObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { LIFEBOAT_CMD, ROOT as TEST_ROOT, textLines } from "../testkit/cli.ts";
import { type LocalS3, SAFE_AWS_ENV, startOwnLocalS3 } from "../testkit/moto.ts";
export { s3Client } from "../testkit/moto.ts";
import { type S3Proxy, startS3Proxy } from "../testkit/s3_proxy.ts";
import { events } from "../testkit/lifecycle.ts";

/** The repository root. */
export const ROOT = TEST_ROOT;
/** Generated databases and scratch files (gitignored). */
export const DATA = `${ROOT}/bench/.data`;
/** Bytes in a mebibyte. */
export const MiB = 1024 * 1024;
/** The bucket every scenario uses on its own fresh server. */
export const BUCKET = "bench-bucket";

// ---------------------------------------------------------------------------------------------
// Statistics

/** Median, minimum, maximum and count of a sample. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Returns the median of `xs` (mean of the middle two for even counts); NaN when empty. */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Returns the `p`-th percentile (0–100) of `xs` by the nearest-rank method; NaN when empty. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[Math.min(s.length, rank) - 1];
}

/** Returns the median, min, max and count of `xs`. */
export function summarize(xs: number[]): Summary {
  return {
    median: median(xs),
    min: xs.length ? Math.min(...xs) : NaN,
    max: xs.length ? Math.max(...xs) : NaN,
    n: xs.length,
  };
}

/** Returns `a[i] / b[i]` for each run measured in both series (paired by run). */
export function ratios(a: number[], b: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (Number.isFinite(a[i]) && Number.isFinite(b[i]) && b[i] > 0) out.push(a[i] / b[i]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Cleanup: everything the bench starts is stopped here, on success, failure or Ctrl-C.

const cleanups: (() => Promise<void> | void)[] = [];

/** Registers `fn` to run at cleanup (last registered runs first); returns an unregister. */
export function onCleanup(fn: () => Promise<void> | void): () => void {
  cleanups.push(fn);
  return () => {
    const i = cleanups.indexOf(fn);
    if (i >= 0) cleanups.splice(i, 1);
  };
}

/** Runs every registered cleanup once, newest first; never throws. */
export async function runCleanups(): Promise<void> {
  while (cleanups.length) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (e) {
      console.error(`bench: cleanup failed: ${e instanceof Error ? e.message : e}`);
    }
  }
}

/** Returns the pids of a process's direct children (Linux /proc). */
export function childPids(pid: number): number[] {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`);
    return text.trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Kills `pid` and, first, its descendants (all started by the bench); ignores gone processes. */
export function killTree(pid: number, sig: Deno.Signal = "SIGKILL"): void {
  for (const c of childPids(pid)) killTree(c, sig);
  try {
    Deno.kill(pid, sig);
  } catch { /* already gone */ }
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** A started child process, registered for cleanup until it exits. */
export interface Spawned {
  proc: Deno.ChildProcess;
  pid: number;
  /** Wall-clock ms (performance.now) just before spawning. */
  startedAt: number;
  /** Stderr lines as they arrive, each with its arrival time (performance.now). */
  lines: { t: number; line: string }[];
  /** Resolves with the first stderr line matching `re` (and its arrival time); rejects after `ms`. */
  waitForLine(re: RegExp, ms: number): Promise<{ t: number; line: string }>;
  /** Resolves when the process has exited, with its code, stdout and the wall time. */
  done: Promise<{ code: number; stdout: string; stderr: string; ms: number; endedAt: number }>;
}

/** Options for a child: exact environment (nothing inherited), stdin piped or not, a timeout. */
export interface SpawnOptions {
  env: Record<string, string>;
  stdin?: "piped" | "null";
  /** Kill the process tree after this many ms (the result then has code 124). */
  timeoutMs?: number;
  cwd?: string;
}

/** Starts `cmd`, collects stdout and stderr lines, kills it on timeout or bench cleanup. */
export function spawn(cmd: string[], o: SpawnOptions): Spawned {
  const startedAt = performance.now();
  const proc = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: o.env,
    clearEnv: true,
    cwd: o.cwd,
    stdin: o.stdin ?? "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const unregister = onCleanup(() => killTree(proc.pid));
  const lines: { t: number; line: string }[] = [];
  const waiters: { re: RegExp; resolve: (v: { t: number; line: string }) => void }[] = [];
  const readLines = async (stream: ReadableStream<Uint8Array>, each?: (l: string) => void) => {
    const all: string[] = [];
    for await (const line of textLines(stream)) {
      all.push(line);
      each?.(line);
    }
    return all.join("\n");
  };
  const onErrLine = (line: string) => {
    const entry = { t: performance.now(), line };
    lines.push(entry);
    for (const w of [...waiters]) {
      if (w.re.test(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  };
  const out = readLines(proc.stdout);
  const err = readLines(proc.stderr, onErrLine);
  let timedOut = false;
  const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    killTree(proc.pid);
  }, o.timeoutMs);
  const done = (async () => {
    const status = await proc.status;
    const endedAt = performance.now();
    clearTimeout(timer);
    unregister();
    const [stdout, stderr] = await Promise.all([out, err]);
    return {
      code: timedOut ? 124 : status.code,
      stdout,
      stderr,
      ms: endedAt - startedAt,
      endedAt,
    };
  })();
  return {
    proc,
    pid: proc.pid,
    startedAt,
    lines,
    done,
    waitForLine(re, ms) {
      const hit = lines.find((l) => re.test(l.line));
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        const w = {
          re,
          resolve: (v: { t: number; line: string }) => {
            clearTimeout(t);
            resolve(v);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no stderr line matching ${re} within ${ms} ms`));
        }, ms);
        waiters.push(w);
        done.then(() => {
          if (waiters.includes(w)) {
            waiters.splice(waiters.indexOf(w), 1);
            clearTimeout(t);
            reject(new Error(`process exited before a line matching ${re}`));
          }
        });
      });
    },
  };
}

/** One finished, timed command: wall ms, peak RSS (KiB, from /usr/bin/time), exit code, output. */
export interface Timed {
  ms: number;
  rssKiB: number;
  code: number;
  stdout: string;
  stderr: string;
}

let timeSeq = 0;

/**
 * Runs `cmd` to completion under `/usr/bin/time` and returns its wall time (measured here) and
 * peak RSS (the kernel's ru_maxrss for the command and its children).
 */
export async function timed(cmd: string[], o: SpawnOptions): Promise<Timed> {
  const rssFile = `${DATA}/work/.rss-${Deno.pid}-${timeSeq++}`;
  const s = spawn(["/usr/bin/time", "-f", "%M", "-o", rssFile, ...cmd], o);
  const r = await s.done;
  let rssKiB = NaN;
  try {
    rssKiB = Number((await Deno.readTextFile(rssFile)).trim().split("\n").pop());
    await Deno.remove(rssFile);
  } catch { /* killed before writing */ }
  return { ms: r.ms, rssKiB, code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** Throws with the command's stderr tail when it did not exit 0. */
export function assertOk(what: string, r: { code: number; stderr: string }): void {
  if (r.code !== 0) {
    const tail = r.stderr.trim().split("\n").slice(-8).join("\n");
    throw new Error(`${what} exited ${r.code}${r.code === 124 ? " (timeout)" : ""}:\n${tail}`);
  }
}

/** Returns the peak RSS (VmHWM, KiB) of a live process, or NaN once it is gone. */
export function peakRssKiB(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Parses lifeboat's JSON log lines (one object per line); other lines are skipped. */
export function logEvents(stderr: string): Record<string, unknown>[] {
  return events(stderr.split("\n"));
}

// ---------------------------------------------------------------------------------------------
// Environments and commands

/** Environment variables of this process passed on to lifeboat (LIFEBOAT_S3_*, for experiments). */
function lifeboatKnobs(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("LIFEBOAT_S3_")) out[k] = v;
  }
  return out;
}

function basics(): Record<string, string> {
  const keep = ["PATH", "HOME", "DENO_DIR", "PYENV_ROOT", "PYENV_VERSION", "LANG"];
  const out: Record<string, string> = {};
  for (const k of keep) {
    const v = Deno.env.get(k);
    if (v) out[k] = v;
  }
  return out;
}

/** Environment for lifeboat against `endpoint`: JSON logs, test keys, no metadata service. */
export function lifeboatEnv(
  endpoint: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...basics(),
    ...SAFE_AWS_ENV,
    AWS_ENDPOINT_URL_S3: endpoint,
    LIFEBOAT_LOG_FORMAT: "json",
    FLY_MACHINE_ID: "bench",
    ...lifeboatKnobs(),
    ...extra,
  };
}

/**
 * Environment for the AWS CLI: test keys, no user config, checksums only when required; with
 * `oneRequest`, a config that moves any object in one request (no multipart, no ranged GETs).
 */
export function awsCliEnv(oneRequest = false): Record<string, string> {
  let config = `${DATA}/no-aws-config`;
  if (oneRequest) {
    config = `${DATA}/aws-config-one-request`;
    Deno.mkdirSync(DATA, { recursive: true });
    Deno.writeTextFileSync(config, "[default]\ns3 =\n  multipart_threshold = 5GB\n");
  }
  return {
    ...basics(),
    ...SAFE_AWS_ENV,
    AWS_CONFIG_FILE: config,
    AWS_SHARED_CREDENTIALS_FILE: `${DATA}/no-aws-credentials`,
    AWS_REQUEST_CHECKSUM_CALCULATION: "when_required",
    AWS_RESPONSE_CHECKSUM_VALIDATION: "when_required",
    AWS_PAGER: "",
  };
}

/** Environment for the bench's own Deno scripts (writer, raw SDK transfers). */
export function scriptEnv(endpoint = ""): Record<string, string> {
  return { ...basics(), ...SAFE_AWS_ENV, ...(endpoint ? { AWS_ENDPOINT_URL_S3: endpoint } : {}) };
}

/**
 * The command that runs lifeboat as the compiled binary would (`deno run` with the compile's permission flags): this
 * checkout's, BENCH_LIFEBOAT_ROOT's if set, or `root`'s (another checkout, to try a change).
 */
export function lifeboatCmd(root = Deno.env.get("BENCH_LIFEBOAT_ROOT")): string[] {
  if (!root) return [...LIFEBOAT_CMD];
  return LIFEBOAT_CMD.map((a) => a.replaceAll(TEST_ROOT, root.replace(/\/$/, "")));
}

/** The command that runs one of the bench's own scripts with all permissions. */
export function scriptCmd(script: string): string[] {
  return [
    Deno.execPath(),
    "run",
    "-q",
    "-A",
    `--config=${ROOT}/deno.json`,
    `${ROOT}/bench/${script}`,
  ];
}

// ---------------------------------------------------------------------------------------------
// S3: a fresh server per scenario, an SDK client, and the counting proxy.

/** Returns a copy of `xs` rotated left by `n`, so no contender always goes first. */
export function rotate<T>(xs: T[], n: number): T[] {
  const k = n % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

/** Starts a fresh moto_server with the bench bucket; it is stopped at cleanup or by `stop()`. */
export async function freshS3(): Promise<LocalS3> {
  const s3 = await startOwnLocalS3(); // a fresh server per scenario, never a shared one
  const unregister = onCleanup(() => s3.stop());
  await s3.createBucket(BUCKET);
  return {
    ...s3,
    async stop() {
      unregister();
      await s3.stop();
    },
  };
}

/** Deletes one object (frees moto's memory between large runs). */
export async function deleteObject(client: S3Client, key: string): Promise<void> {
  await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
}

/**
 * Runs `fn` with a fresh S3 and the counting proxy in front of it (and, with `name`, the empty
 * scratch directory `workDir(name)`); all of them are gone afterwards.
 */
export async function withCountingS3<T>(
  name: string | undefined,
  fn: (x: { dir: string; s3: LocalS3; proxy: S3Proxy }) => Promise<T>,
): Promise<T> {
  const dir = name ? await workDir(name) : "";
  const s3 = await freshS3();
  const proxy = startCountingProxy(s3.endpoint);
  try {
    return await fn({ dir, s3, proxy });
  } finally {
    await proxy.stop();
    await s3.stop();
    if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Starts the S3 proxy (testkit/s3_proxy.ts) to `target`, to count requests; stopped at cleanup. */
export function startCountingProxy(target: string): S3Proxy {
  const proxy = startS3Proxy(target);
  const stop = proxy.stop;
  const unregister = onCleanup(stop);
  proxy.stop = async () => {
    unregister();
    await stop();
  };
  return proxy;
}

// ---------------------------------------------------------------------------------------------
// Files

/** Copies `src` to `dst` with a real copy (no reflink), as `cp` does; returns when written. */
export async function copyFile(src: string, dst: string): Promise<void> {
  const r = await spawn(["cp", "--reflink=never", src, dst], { env: { PATH: "/usr/bin:/bin" } })
    .done;
  assertOk(`cp ${src}`, r);
}

/** Removes a file and its SQLite sidecars if present. */
export async function removeDb(path: string): Promise<void> {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) {
    await Deno.remove(p).catch(() => {});
  }
}

/** Creates (empty) the scratch directory for one scenario and returns its path. */
export async function workDir(name: string): Promise<string> {
  const dir = `${DATA}/work/${name}`;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Formats milliseconds for tables: "850 ms", "12.3 s". */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
