/** Turns flags and environment variables into one validated Config (flags win over env). */
import { isAbsolute, resolve } from "node:path";
import type { LogLevel } from "@logtape/logtape";
import { parseDuration } from "./duration.ts";
import { configError } from "./errors.ts";
import type { LogSettings } from "./log.ts";
import { sanitizeMachine } from "./store/keys.ts";
import type { S3Settings } from "./store/s3.ts";

/** Where backups live, parsed from `--url`. */
export type StoreUrl =
  | { kind: "file"; dir: string }
  | { kind: "s3"; bucket: string; prefix: string };

/** S3 settings that come from configuration (bucket, prefix and credentials come elsewhere). */
export type S3Options = Omit<S3Settings, "bucket" | "prefix" | "credentials">;

/** Everything a command needs, validated. */
export interface Config {
  /** Absolute path of the SQLite database. */
  db: string;
  store: StoreUrl;
  /** Milliseconds between periodic backups in `watch`. */
  interval: number;
  /** `restore --force`: replace an existing database. */
  force: boolean;
  /** `watch -- CMD ARGS…`: the app to run as a child; empty when none. */
  command: string[];
  /** This machine's name, for keys and metadata. */
  machine: string;
  s3: S3Options;
  /** How many times restore asks the store before giving up, and the first backoff delay. */
  restoreAttempts: number;
  retryBaseMs: number;
  /** Upper bound for the final backup on shutdown, in milliseconds. */
  shutdownTimeoutMs: number;
  log: LogSettings;
}

/** Flags as the CLI parsed them; undefined means not given. */
export interface Flags {
  db?: string;
  url?: string;
  interval?: string;
  force?: boolean;
}

/** The environment as a plain lookup (tests pass their own). */
export type Env = Record<string, string | undefined>;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const MIN_INTERVAL_MS = 1000;
const LEVELS: Record<string, LogLevel> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warning",
  warning: "warning",
  error: "error",
  fatal: "fatal",
};

/** Returns the store location for `url`; throws a config error naming the accepted forms. */
export function parseStoreUrl(url: string, cwd: string = Deno.cwd()): StoreUrl {
  const forms = "Use s3://BUCKET/PREFIX, file:///ABS/DIR or a directory path";
  const text = url.trim();
  if (text === "") throw configError("the store URL is empty", forms);
  if (text.startsWith("s3://")) {
    const rest = text.slice(5);
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = (slash < 0 ? "" : rest.slice(slash + 1)).replace(/\/+$/, "");
    if (!BUCKET.test(bucket) || bucket.includes("..")) {
      throw configError(
        `invalid S3 bucket name ${JSON.stringify(bucket)} in ${text}`,
        "Bucket names are 3–63 lowercase letters, digits, dots or hyphens",
      );
    }
    checkPrefix(prefix, text);
    return { kind: "s3", bucket, prefix };
  }
  if (text.startsWith("file://")) {
    let path: string;
    try {
      const u = new URL(text);
      if (u.host !== "") throw new Error("host");
      path = decodeURIComponent(u.pathname);
    } catch {
      throw configError(`invalid file URL ${text}`, "Use file:///ABSOLUTE/DIR (three slashes)");
    }
    return { kind: "file", dir: stripSlash(resolve(path)) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw configError(`unsupported store URL scheme in ${text}`, forms);
  }
  return { kind: "file", dir: stripSlash(isAbsolute(text) ? resolve(text) : resolve(cwd, text)) };
}

function stripSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, "") : p;
}

function checkPrefix(prefix: string, url: string): void {
  const parts = prefix === "" ? [] : prefix.split("/");
  if (prefix.startsWith("/") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw configError(
      `invalid S3 prefix ${JSON.stringify(prefix)} in ${url}`,
      "Use s3://BUCKET/some/prefix: no empty, '.' or '..' segments",
    );
  }
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(prefix)) {
    throw configError(`invalid character in S3 prefix of ${url}`, "Use printable characters");
  }
}

function choice<T extends string>(
  env: Env,
  name: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = raw.trim();
  const hit = allowed.find((a) => a.toLowerCase() === v.toLowerCase());
  if (!hit) {
    throw configError(`${name}=${raw} is not valid`, `Use one of: ${allowed.join(", ")}`);
  }
  return hit;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const v = choice(
    env,
    name,
    ["true", "false", "1", "0", "yes", "no"],
    fallback ? "true" : "false",
  );
  return v === "true" || v === "1" || v === "yes";
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw configError(`${name}=${raw} is not valid`, `Use a whole number from ${min} to ${max}`);
  }
  return n;
}

function duration(name: string, raw: string, minMs: number): number {
  const ms = parseDuration(raw);
  if (ms === undefined) {
    throw configError(`${name} ${JSON.stringify(raw)} is not a duration`, "Use e.g. 30s, 5m or 1h");
  }
  if (ms < minMs) {
    throw configError(`${name} ${raw} is too short`, `Use at least ${minMs / 1000}s`);
  }
  return ms;
}

function endpointOf(env: Env): string | undefined {
  const raw = env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL;
  if (!raw) return undefined;
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw configError(
      `S3 endpoint ${JSON.stringify(raw)} is not an http(s) URL`,
      "Set AWS_ENDPOINT_URL_S3 to e.g. https://fly.storage.tigris.dev",
    );
  }
  return raw.replace(/\/+$/, "");
}

/** Reads S3 settings from the standard AWS variables and lifeboat's own; throws on bad values. */
export function s3Options(env: Env): S3Options {
  const endpoint = endpointOf(env);
  const sse = choice(env, "LIFEBOAT_S3_SSE", ["AES256", "aws:kms", "none"] as const, "AES256");
  const kmsKeyId = env.LIFEBOAT_S3_KMS_KEY_ID || undefined;
  if (kmsKeyId && sse !== "aws:kms") {
    throw configError(
      "LIFEBOAT_S3_KMS_KEY_ID is set but LIFEBOAT_S3_SSE is not aws:kms",
      "Set LIFEBOAT_S3_SSE=aws:kms, or unset the key id",
    );
  }
  return {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || "us-east-1",
    endpoint,
    forcePathStyle: bool(env, "LIFEBOAT_S3_FORCE_PATH_STYLE", endpoint !== undefined),
    checksum: choice(
      env,
      "LIFEBOAT_S3_CHECKSUM",
      ["when_supported", "when_required"] as const,
      endpoint ? "when_required" : "when_supported",
    ),
    sse,
    kmsKeyId,
    partSize: int(env, "LIFEBOAT_S3_PART_SIZE_MB", 8, 5, 512) * 1024 * 1024,
    queueSize: int(env, "LIFEBOAT_S3_CONCURRENCY", 4, 1, 16),
    maxAttempts: int(env, "LIFEBOAT_S3_MAX_ATTEMPTS", 3, 1, 10),
  };
}

/** Reads log settings; the default format is text on a terminal and JSON otherwise. */
export function logSettings(env: Env, isTty: boolean): LogSettings {
  const format = choice(
    env,
    "LIFEBOAT_LOG_FORMAT",
    ["json", "text"] as const,
    isTty ? "text" : "json",
  );
  const rawLevel = (env.LIFEBOAT_LOG_LEVEL || "info").trim().toLowerCase();
  const level = LEVELS[rawLevel];
  if (!level) {
    throw configError(
      `LIFEBOAT_LOG_LEVEL=${env.LIFEBOAT_LOG_LEVEL} is not valid`,
      "Use one of: debug, info, warning, error",
    );
  }
  return { format, level };
}

/** Returns the machine name: FLY_MACHINE_ID, else the hostname, made safe for keys. */
export function machineName(env: Env): string {
  let host = "";
  try {
    host = Deno.hostname();
  } catch { /* no permission: fall back */ }
  return sanitizeMachine(env.FLY_MACHINE_ID || host || "unknown");
}

/** Builds the Config for one command; throws a config error (exit 2) naming the fix. */
export function loadConfig(flags: Flags, env: Env, command: string[] = []): Config {
  const dbRaw = flags.db ?? env.LIFEBOAT_DB;
  if (!dbRaw) {
    throw configError("no database given", "Pass --db PATH or set LIFEBOAT_DB");
  }
  const urlRaw = flags.url ?? env.LIFEBOAT_URL;
  if (!urlRaw) {
    throw configError("no store given", "Pass --url s3://BUCKET/PREFIX or set LIFEBOAT_URL");
  }
  const intervalRaw = flags.interval ?? env.LIFEBOAT_INTERVAL ?? "5m";
  const shutdownRaw = env.LIFEBOAT_SHUTDOWN_TIMEOUT || "30s";
  return {
    db: resolve(dbRaw),
    store: parseStoreUrl(urlRaw),
    interval: duration(
      flags.interval ? "--interval" : "LIFEBOAT_INTERVAL",
      intervalRaw,
      MIN_INTERVAL_MS,
    ),
    force: flags.force ?? false,
    command,
    machine: machineName(env),
    s3: s3Options(env),
    restoreAttempts: int(env, "LIFEBOAT_RESTORE_ATTEMPTS", 5, 1, 100),
    retryBaseMs: 500,
    shutdownTimeoutMs: duration("LIFEBOAT_SHUTDOWN_TIMEOUT", shutdownRaw, 1000),
    log: logSettings(env, Deno.stderr.isTerminal()),
  };
}
