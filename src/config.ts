/** Turns flags and environment variables into one validated Config (flags win over env). */
import { isAbsolute, resolve } from "node:path";
import type { LogLevel } from "@logtape/logtape";
import { databaseEntries, type DatabaseSpec, planDatabases } from "./databases.ts";
import { exactDuration, parseDuration } from "./duration.ts";
import { configError } from "./errors.ts";
import type { LogSettings } from "./log.ts";
import { checkCommand } from "./supervisor.ts";
import type { ListenAddr } from "./metrics_server.ts";
import { sanitizeMachine } from "./store/keys.ts";
import type { RoleSettings } from "./store/s3_credentials.ts";
import type { S3Options, StaticKeys, StoreUrl } from "./store/settings.ts";
import { RESTORE_CHECKS, type RestoreCheck } from "./snapshot/install.ts";

/** Everything a command needs, validated. */
export interface Config {
  /** Absolute path of the SQLite database (the first one when there are several). */
  db: string;
  store: StoreUrl;
  /** Every database of this run (one or more), each with its own store (see databases.ts). */
  databases: DatabaseSpec[];
  /** Databases backed up at once when there are several (LIFEBOAT_BACKUP_CONCURRENCY). */
  backupConcurrency: number;
  /** Milliseconds between periodic backups in `watch`. */
  interval: number;
  /** Milliseconds between `watch`'s restore drills of a database (LIFEBOAT_DRILL_INTERVAL); 0: off. */
  drillInterval: number;
  /** `restore --force`: replace an existing database. */
  force: boolean;
  /** `--allow-empty` / LIFEBOAT_ALLOW_EMPTY: start empty even if the store's marker says backups existed. */
  allowEmpty: boolean;
  /** LIFEBOAT_RESTORE_CHECK: the SQLite check a restore runs once the SHA-256 matched. */
  restoreCheck: RestoreCheck;
  /** `watch -- CMD ARGS…`: the app to run as a child; empty when none. */
  command: string[];
  /** This machine's name, for keys and metadata. */
  machine: string;
  s3: S3Options;
  /** How many times restore asks the store before giving up (LIFEBOAT_RESTORE_ATTEMPTS). */
  attempts: number;
  /** Upper bound for the final backup on shutdown, in milliseconds. */
  shutdownTimeoutMs: number;
  /** How long the app may take to exit after a forwarded SIGTERM/SIGINT before it gets SIGKILL. */
  appStopTimeoutMs: number;
  /** On a fly.io release machine (RELEASE_COMMAND set): no restore, no upload. */
  releaseCommand: boolean;
  /** `watch` serves Prometheus metrics here (LIFEBOAT_METRICS_ADDR); undefined: no endpoint. */
  metricsAddr?: ListenAddr;
  log: LogSettings;
}

/** Flags as the CLI parsed them; undefined means not given. */
export interface Flags {
  /** One path, or several (`--db` repeated). */
  db?: string | string[];
  url?: string;
  interval?: string;
  force?: boolean;
  allowEmpty?: boolean;
}

/** The environment as a plain lookup (tests pass their own). */
export type Env = Record<string, string | undefined>;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
/** Where fly.io writes the OIDC token when AWS_ROLE_ARN is set. */
export const FLY_TOKEN_FILE = "/.fly/oidc_token";
/** fly.io's machine API socket, which mints OIDC tokens on request. */
export const FLY_API_SOCKET = "/.fly/api";
const MIN_INTERVAL_MS = 1000;
const HOUR = 3_600_000;
/** Upper bounds: beyond them a value is a mistake (and a timer beyond 2^31 ms would overflow). */
const MAX_INTERVAL_MS = 24 * HOUR;
const MAX_STOP_MS = HOUR;
const MAX_S3_TIMEOUT_MS = 10 * 60_000;
/** Restore drills: once a day by default; at most every 30 days (720h). */
const DEFAULT_DRILL_INTERVAL = "24h";
const MAX_DRILL_INTERVAL_MS = 720 * HOUR;
/** Defaults: app stop + final backup + a margin fit fly.toml's kill_timeout (45s). */
const DEFAULT_APP_STOP = "10s";
const DEFAULT_SHUTDOWN = "30s";
/** Databases backed up at once in `watch` and `backup` (measured: BENCHMARKS.md, P12). */
const DEFAULT_BACKUP_CONCURRENCY = 2;
const LEVELS: Record<string, LogLevel> = {
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warning",
  warning: "warning",
  error: "error",
  fatal: "fatal",
};

/**
 * Returns the store location for `url`; `s3:///PREFIX` (no bucket) takes `bucketName` (the
 * BUCKET_NAME that `fly storage create` sets). Throws a config error naming the accepted forms.
 */
export function parseStoreUrl(
  url: string,
  cwd: string = Deno.cwd(),
  bucketName?: string,
): StoreUrl {
  const forms =
    "Use s3://BUCKET/PREFIX, s3:///PREFIX with BUCKET_NAME, file:///ABS/DIR or a directory";
  const text = url.trim();
  if (text === "") throw configError("the store URL is empty", forms);
  if (text.startsWith("s3://")) {
    const rest = text.slice(5);
    const slash = rest.indexOf("/");
    let bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = (slash < 0 ? "" : rest.slice(slash + 1)).replace(/\/+$/, "");
    if (bucket === "") {
      bucket = bucketName?.trim() ?? "";
      if (bucket === "") {
        throw configError(
          `${text} names no bucket and BUCKET_NAME is not set`,
          "Use s3://BUCKET/PREFIX, or set BUCKET_NAME (fly storage create does)",
        );
      }
    }
    if (!BUCKET.test(bucket) || bucket.includes("..")) {
      throw configError(
        `invalid S3 bucket name ${JSON.stringify(bucket)} in ${text}` +
          (slash === 0 || rest === "" ? " (from BUCKET_NAME)" : ""),
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

/** Parses a duration within [minMs, maxMs]; throws a config error naming the bounds. */
function duration(name: string, raw: string, minMs: number, maxMs: number): number {
  const ms = parseDuration(raw);
  if (ms === undefined) {
    throw configError(`${name} ${JSON.stringify(raw)} is not a duration`, "Use e.g. 30s, 5m or 1h");
  }
  if (ms < minMs) {
    throw configError(`${name} ${raw} is too short`, `Use at least ${exactDuration(minMs)}`);
  }
  if (ms > maxMs) {
    throw configError(`${name} ${raw} is too long`, `Use at most ${exactDuration(maxMs)}`);
  }
  return ms;
}

/** Returns the http(s) URL in `env[name]` without trailing slashes; throws a config error. */
function httpUrl(env: Env, name: string, example: string): string | undefined {
  const raw = env[name];
  if (!raw) return undefined;
  try {
    const u = new URL(raw);
    if (u.protocol !== "http:" && u.protocol !== "https:") throw new Error("scheme");
  } catch {
    throw configError(
      `${name} ${JSON.stringify(raw)} is not an http(s) URL`,
      `Set ${name} to e.g. ${example}`,
    );
  }
  return raw.replace(/\/+$/, "");
}

/**
 * Returns the S3 endpoint: LIFEBOAT_S3_ENDPOINT (a URL, or `aws` for AWS's own endpoint whatever
 * the shared variables say) wins over AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL; undefined means
 * AWS. Throws a config error for a value that is not an http(s) URL.
 */
function endpointOf(env: Env): string | undefined {
  const own = env.LIFEBOAT_S3_ENDPOINT?.trim();
  if (own?.toLowerCase() === "aws") return undefined;
  const name = own
    ? "LIFEBOAT_S3_ENDPOINT"
    : env.AWS_ENDPOINT_URL_S3
    ? "AWS_ENDPOINT_URL_S3"
    : "AWS_ENDPOINT_URL";
  return httpUrl(env, name, "https://fly.storage.tigris.dev");
}

/**
 * Whether requests to `endpoint` default to path-style addressing: only for loopback and IP
 * literal hosts, where `BUCKET.HOST` cannot resolve (127.0.0.1, [::1], localhost). AWS, Tigris,
 * R2 and any other named host get virtual-hosted addressing. Never throws.
 */
export function pathStyleByDefault(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  let host: string;
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    return false;
  }
  return host === "localhost" || host.endsWith(".localhost") || host.startsWith("[") ||
    /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}

/**
 * Reads lifeboat's own keys (LIFEBOAT_ACCESS_KEY_ID, LIFEBOAT_SECRET_ACCESS_KEY, optional
 * LIFEBOAT_SESSION_TOKEN); undefined when neither is set. Throws a config error when only one of
 * the pair is set; never puts a key into the message.
 */
function keysOf(env: Env): StaticKeys | undefined {
  const accessKeyId = env.LIFEBOAT_ACCESS_KEY_ID?.trim();
  const secretAccessKey = env.LIFEBOAT_SECRET_ACCESS_KEY?.trim();
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey) {
    throw configError(
      `${accessKeyId ? "LIFEBOAT_SECRET_ACCESS_KEY" : "LIFEBOAT_ACCESS_KEY_ID"} is not set`,
      "Set LIFEBOAT_ACCESS_KEY_ID and LIFEBOAT_SECRET_ACCESS_KEY together, or neither",
    );
  }
  const sessionToken = env.LIFEBOAT_SESSION_TOKEN?.trim();
  return { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) };
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return ""; /* no permission: fall back */
  }
}

/**
 * Reads the role to assume with a web identity token (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE,
 * LIFEBOAT_ROLE_SESSION_NAME or else AWS_ROLE_SESSION_NAME, AWS_ENDPOINT_URL_STS,
 * LIFEBOAT_FLY_API_SOCKET); undefined without AWS_ROLE_ARN. Throws a config error (exit 2) for a
 * malformed ARN, session name or endpoint.
 */
export function roleOptions(env: Env, region: string): RoleSettings | undefined {
  const arn = env.AWS_ROLE_ARN?.trim();
  if (!arn) return undefined;
  if (!ROLE_ARN.test(arn)) {
    // Echo the value only when it looks like an ARN: a pasted secret must not reach the logs.
    throw configError(
      arn.startsWith("arn:")
        ? `AWS_ROLE_ARN ${JSON.stringify(arn)} is not an IAM role ARN`
        : "AWS_ROLE_ARN is not an IAM role ARN (it does not start with arn:)",
      "Use arn:aws:iam::<12-digit account id>:role/<name>, e.g. arn:aws:iam::123456789012:role/lifeboat",
    );
  }
  const sessionVar = env.LIFEBOAT_ROLE_SESSION_NAME?.trim()
    ? "LIFEBOAT_ROLE_SESSION_NAME"
    : "AWS_ROLE_SESSION_NAME";
  const given = env[sessionVar]?.trim();
  if (given && !SESSION_NAME.test(given)) {
    throw configError(
      `${sessionVar} ${JSON.stringify(given)} is not valid`,
      "Use 2–64 letters, digits or +=,.@_- characters, or unset it",
    );
  }
  const machine = (env.FLY_MACHINE_ID || hostName() || "unknown").replace(/[^\w+=,.@-]/g, "-");
  return {
    roleArn: arn,
    sessionName: given || `lifeboat-${machine}`.slice(0, 64),
    tokenFile: env.AWS_WEB_IDENTITY_TOKEN_FILE || FLY_TOKEN_FILE,
    flyApiSocket: env.LIFEBOAT_FLY_API_SOCKET || FLY_API_SOCKET,
    stsRegion: region === "auto" ? "us-east-1" : region,
    stsEndpoint: httpUrl(env, "AWS_ENDPOINT_URL_STS", "https://sts.us-east-1.amazonaws.com"),
  };
}

/**
 * Reads S3 settings: lifeboat's own variables (LIFEBOAT_S3_ENDPOINT, LIFEBOAT_S3_REGION,
 * LIFEBOAT_ACCESS_KEY_ID…) win over the shared AWS ones the app may also use. Defaults follow the
 * store: virtual-hosted addressing except on loopback/IP endpoints, no SSE header (the bucket's
 * default encryption applies). Throws a config error (exit 2) naming the variable to fix.
 */
export function s3Options(env: Env): S3Options {
  const endpoint = endpointOf(env);
  const sse = choice(env, "LIFEBOAT_S3_SSE", ["AES256", "aws:kms", "none"] as const, "none");
  const kmsKeyId = env.LIFEBOAT_S3_KMS_KEY_ID || undefined;
  if (kmsKeyId && sse !== "aws:kms") {
    throw configError(
      "LIFEBOAT_S3_KMS_KEY_ID is set but LIFEBOAT_S3_SSE is not aws:kms",
      "Set LIFEBOAT_S3_SSE=aws:kms, or unset the key id",
    );
  }
  const regionVar = ["LIFEBOAT_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]
    .find((name) => env[name]?.trim());
  const region = regionVar ? env[regionVar]!.trim() : "us-east-1";
  if (!endpoint && region === "auto") {
    throw configError(
      `${regionVar}=auto is a Tigris/R2 region, but the endpoint is AWS`,
      "Set LIFEBOAT_S3_REGION to the bucket's AWS region, or LIFEBOAT_S3_ENDPOINT to the store",
    );
  }
  const keys = keysOf(env);
  const role = keys ? undefined : roleOptions(env, region);
  return {
    region,
    endpoint,
    forcePathStyle: bool(env, "LIFEBOAT_S3_FORCE_PATH_STYLE", pathStyleByDefault(endpoint)),
    checksum: choice(
      env,
      "LIFEBOAT_S3_CHECKSUM",
      ["when_supported", "when_required"] as const,
      endpoint ? "when_required" : "when_supported",
    ),
    sse,
    kmsKeyId,
    partSize: int(env, "LIFEBOAT_S3_PART_SIZE_MB", 8, 5, 512) * 1024 * 1024,
    concurrency: int(env, "LIFEBOAT_S3_CONCURRENCY", 4, 1, 16),
    maxAttempts: int(env, "LIFEBOAT_S3_MAX_ATTEMPTS", 3, 1, 10),
    timeoutMs: duration(
      "LIFEBOAT_S3_TIMEOUT",
      env.LIFEBOAT_S3_TIMEOUT || "30s",
      100,
      MAX_S3_TIMEOUT_MS,
    ),
    ...(role ? { role } : {}),
    ...(keys ? { keys } : {}),
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

/**
 * Parses a listen address: `:9091` (every interface), `127.0.0.1:9091`, `[::1]:9091` or
 * `host:9091`. Throws a config error (exit 2) naming `name` and the accepted forms.
 */
export function parseListenAddr(raw: string, name = "LIFEBOAT_METRICS_ADDR"): ListenAddr {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw configError(
      `${name} ${JSON.stringify(raw)} is not a listen address`,
      "Use :9091 (every interface), 127.0.0.1:9091 or [::1]:9091",
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

/** Returns the machine name: FLY_MACHINE_ID, else the hostname, made safe for keys. */
export function machineName(env: Env): string {
  return sanitizeMachine(env.FLY_MACHINE_ID || hostName() || "unknown");
}

/** Builds the Config for one command; throws a config error (exit 2) naming the fix. */
export function loadConfig(flags: Flags, env: Env, command: string[] = []): Config {
  const dbEntries = databaseEntries(flags.db, env.LIFEBOAT_DB);
  const urlRaw = flags.url ?? env.LIFEBOAT_URL;
  if (!urlRaw) {
    throw configError("no store given", "Pass --url s3://BUCKET/PREFIX or set LIFEBOAT_URL");
  }
  const intervalRaw = flags.interval ?? env.LIFEBOAT_INTERVAL ?? "5m";
  const shutdownRaw = env.LIFEBOAT_SHUTDOWN_TIMEOUT || DEFAULT_SHUTDOWN;
  const appStopRaw = env.LIFEBOAT_APP_STOP_TIMEOUT || DEFAULT_APP_STOP;
  const store = parseStoreUrl(urlRaw, Deno.cwd(), env.BUCKET_NAME);
  const databases = planDatabases(dbEntries, store);
  return {
    db: databases[0].path,
    store,
    databases,
    backupConcurrency: int(env, "LIFEBOAT_BACKUP_CONCURRENCY", DEFAULT_BACKUP_CONCURRENCY, 1, 16),
    interval: duration(
      flags.interval ? "--interval" : "LIFEBOAT_INTERVAL",
      intervalRaw,
      MIN_INTERVAL_MS,
      MAX_INTERVAL_MS,
    ),
    // "0" or "off" turns drills off.
    drillInterval: /^\s*(0|off)\s*$/i.test(env.LIFEBOAT_DRILL_INTERVAL ?? "") ? 0 : duration(
      "LIFEBOAT_DRILL_INTERVAL",
      env.LIFEBOAT_DRILL_INTERVAL || DEFAULT_DRILL_INTERVAL,
      MIN_INTERVAL_MS,
      MAX_DRILL_INTERVAL_MS,
    ),
    force: flags.force ?? false,
    allowEmpty: flags.allowEmpty ?? bool(env, "LIFEBOAT_ALLOW_EMPTY", false),
    restoreCheck: choice(env, "LIFEBOAT_RESTORE_CHECK", RESTORE_CHECKS, "auto"),
    command: checkCommand(command, env.PATH),
    machine: machineName(env),
    s3: s3Options(env),
    attempts: int(env, "LIFEBOAT_RESTORE_ATTEMPTS", 5, 1, 100),
    shutdownTimeoutMs: duration("LIFEBOAT_SHUTDOWN_TIMEOUT", shutdownRaw, 1000, MAX_STOP_MS),
    appStopTimeoutMs: duration("LIFEBOAT_APP_STOP_TIMEOUT", appStopRaw, 100, MAX_STOP_MS),
    // fly.io sets RELEASE_COMMAND=1 on the temporary machine that runs fly.toml's release_command.
    releaseCommand: (env.RELEASE_COMMAND ?? "") !== "",
    ...(env.LIFEBOAT_METRICS_ADDR
      ? { metricsAddr: parseListenAddr(env.LIFEBOAT_METRICS_ADDR) }
      : {}),
    log: logSettings(env, Deno.stderr.isTerminal()),
  };
}
