/**
 * Turns flags and environment variables into one validated Config (flags win over env). Each
 * setting is a row of `settings.ts` (variables, flag, default, bounds, parser, help); this file
 * reads the rows and adds the rules between settings (a key pair, KMS with SSE, `auto` on AWS).
 */
import { isAbsolute, resolve } from "node:path";
import { databaseEntries, type DatabaseSpec, planDatabases } from "./databases.ts";
import { configError } from "./errors.ts";
import type { LogSettings } from "./log.ts";
import type { ListenAddr } from "./metrics_server.ts";
import { given, read, SETTINGS, type Sources } from "./settings.ts";
import { checkCommand } from "./supervisor.ts";
import { sanitizeMachine } from "./store/keys.ts";
import { isTigrisEndpoint } from "./store/tigris.ts";
import type { RoleSettings } from "./store/s3_credentials.ts";
import type { S3Options, StaticKeys, StoreUrl } from "./store/settings.ts";
import type { RestoreCheck } from "./snapshot/install.ts";
import type { RetentionSetting } from "./store/retention.ts";

export { parseListenAddr } from "./setting_types.ts";
export { FLY_API_SOCKET, FLY_TOKEN_FILE } from "./settings.ts";

/** Everything a command needs, validated. */
export interface Config {
  /** LIFEBOAT_RETENTION: how the newest backups survive the store's rules (store/retention.ts). */
  retention: RetentionSetting;
  /** `restore --from KEY`: restore exactly this backup (one database only). */
  from?: string;
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
  from?: string;
}

/** The environment as a plain lookup (tests pass their own). */
export type Env = Record<string, string | undefined>;

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/**
 * Returns the store location for `url` given as `source` (`--url`, `LIFEBOAT_URL`: named in every
 * message); `s3:///PREFIX` (no bucket) takes `bucketName` (the BUCKET_NAME that `fly storage
 * create` sets). Throws a config error naming the accepted forms.
 */
export function parseStoreUrl(
  url: string,
  cwd: string = Deno.cwd(),
  bucketName?: string,
  source?: string,
): StoreUrl {
  const forms =
    "Use s3://BUCKET/PREFIX, s3:///PREFIX with BUCKET_NAME, file:///ABS/DIR or a directory";
  const text = url.trim();
  const at = source ? `${source}=${text}` : text;
  if (text === "") throw configError(`the store URL${source ? ` ${source}` : ""} is empty`, forms);
  if (text.startsWith("s3://")) {
    const rest = text.slice(5);
    const slash = rest.indexOf("/");
    let bucket = slash < 0 ? rest : rest.slice(0, slash);
    const prefix = (slash < 0 ? "" : rest.slice(slash + 1)).replace(/\/+$/, "");
    const fromEnv = bucket === "";
    if (fromEnv) {
      bucket = bucketName?.trim() ?? "";
      if (bucket === "") {
        throw configError(
          `${at} names no bucket and BUCKET_NAME is not set`,
          "Use s3://BUCKET/PREFIX, or set BUCKET_NAME (fly storage create does)",
        );
      }
    }
    const from = fromEnv ? " (from BUCKET_NAME)" : "";
    if (!BUCKET.test(bucket) || bucket.includes("..")) {
      throw configError(
        `invalid S3 bucket name ${JSON.stringify(bucket)} in ${at}${from}`,
        "Bucket names are 3–63 lowercase letters, digits, dots or hyphens",
      );
    }
    // S3 refuses such bucket names; here it is most likely a server's address given as a bucket.
    if (IPV4.test(bucket)) {
      throw configError(
        `${bucket} in ${at}${from} is an IP address, not a bucket name`,
        `For an S3 server at that address set LIFEBOAT_S3_ENDPOINT=http://${bucket}:PORT and ` +
          "name the bucket in the URL: s3://BUCKET/PREFIX",
      );
    }
    checkPrefix(prefix, at);
    return { kind: "s3", bucket, prefix };
  }
  if (text.startsWith("file://")) {
    let path: string;
    try {
      const u = new URL(text);
      if (u.host !== "") throw new Error("host");
      path = decodeURIComponent(u.pathname);
    } catch {
      throw configError(`invalid file URL ${at}`, "Use file:///ABSOLUTE/DIR (three slashes)");
    }
    return { kind: "file", dir: stripSlash(resolve(path)) };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw configError(`unsupported store URL scheme in ${at}`, forms);
  }
  // `file:dir` or `s3:bucket` is a URL missing its slashes, not a directory named so.
  const scheme = /^(file|s3):/i.exec(text)?.[1].toLowerCase();
  if (scheme) {
    throw configError(
      `${at} is not a store URL: ${scheme}: needs ${scheme === "file" ? "three" : "two"} slashes`,
      scheme === "file"
        ? "Use file:///ABSOLUTE/DIR, or a plain directory path such as ./backups"
        : "Use s3://BUCKET/PREFIX",
    );
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

/** The sources of a config built from the environment alone. */
const fromEnv = (env: Env): Sources => ({ env });

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
    IPV4.test(host);
}

/**
 * Reads lifeboat's own keys (LIFEBOAT_ACCESS_KEY_ID, LIFEBOAT_SECRET_ACCESS_KEY, optional
 * LIFEBOAT_SESSION_TOKEN); undefined when neither is set. Throws a config error when only one of
 * the pair is set; never puts a key into the message.
 */
function keysOf(src: Sources): StaticKeys | undefined {
  const accessKeyId = read(SETTINGS.accessKeyId, src);
  const secretAccessKey = read(SETTINGS.secretAccessKey, src);
  if (!accessKeyId && !secretAccessKey) return undefined;
  if (!accessKeyId || !secretAccessKey) {
    const [id] = SETTINGS.accessKeyId.env;
    const [secret] = SETTINGS.secretAccessKey.env;
    throw configError(
      `${accessKeyId ? secret : id} is not set`,
      `Set ${id} and ${secret} together, or neither`,
    );
  }
  const sessionToken = read(SETTINGS.sessionToken, src);
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
  const src = fromEnv(env);
  const roleArn = read(SETTINGS.roleArn, src);
  if (!roleArn) return undefined;
  const given = read(SETTINGS.roleSessionName, src);
  const machine = (read(SETTINGS.machine, src) || hostName() || "unknown")
    .replace(/[^\w+=,.@-]/g, "-");
  return {
    roleArn,
    sessionName: given ?? `lifeboat-${machine}`.slice(0, 64),
    tokenFile: read(SETTINGS.tokenFile, src),
    flyApiSocket: read(SETTINGS.flyApiSocket, src),
    stsRegion: region === "auto" ? "us-east-1" : region,
    stsEndpoint: read(SETTINGS.stsEndpoint, src),
  };
}

/**
 * Reads S3 settings: lifeboat's own variables (LIFEBOAT_S3_ENDPOINT, LIFEBOAT_S3_REGION,
 * LIFEBOAT_ACCESS_KEY_ID…) win over the shared AWS ones the app may also use. Defaults follow the
 * store: virtual-hosted addressing except on loopback/IP endpoints, no SSE header (the bucket's
 * default encryption applies). Throws a config error (exit 2) naming the variable to fix.
 */
export function s3Options(env: Env): S3Options {
  const src = fromEnv(env);
  const own = read(SETTINGS.endpoint, src);
  const endpoint = own === "aws" ? undefined : own;
  const sse = read(SETTINGS.sse, src);
  const kmsKeyId = read(SETTINGS.kmsKeyId, src);
  if (kmsKeyId && sse !== "aws:kms") {
    throw configError(
      "LIFEBOAT_S3_KMS_KEY_ID is set but LIFEBOAT_S3_SSE is not aws:kms",
      "Set LIFEBOAT_S3_SSE=aws:kms, or unset the key id",
    );
  }
  const tigris = isTigrisEndpoint(endpoint);
  // Tigris routes every region itself and documents `auto`; fly storage create sets no region.
  const region = read(SETTINGS.region, src) ?? (tigris ? "auto" : "us-east-1");
  if (!endpoint && region === "auto") {
    throw configError(
      `${given(SETTINGS.region, src)?.name}=auto is a Tigris/R2 region, but the endpoint is AWS`,
      "Set LIFEBOAT_S3_REGION to the bucket's AWS region, or LIFEBOAT_S3_ENDPOINT to the store",
    );
  }
  const keys = keysOf(src);
  const role = keys ? undefined : roleOptions(env, region);
  return {
    region,
    endpoint,
    forcePathStyle: read(SETTINGS.forcePathStyle, src) ?? pathStyleByDefault(endpoint),
    checksum: read(SETTINGS.checksum, src) ?? (endpoint ? "when_required" : "when_supported"),
    sse,
    kmsKeyId,
    partSize: read(SETTINGS.partSizeMb, src) * 1024 * 1024,
    concurrency: read(SETTINGS.s3Concurrency, src),
    maxAttempts: read(SETTINGS.s3MaxAttempts, src),
    timeoutMs: read(SETTINGS.s3Timeout, src),
    ...(tigris ? { globalConsistency: true } : {}),
    ...(role ? { role } : {}),
    ...(keys ? { keys } : {}),
  };
}

/** Reads log settings; the default format is text on a terminal and JSON otherwise. */
export function logSettings(env: Env, isTty: boolean): LogSettings {
  const src = fromEnv(env);
  return {
    format: read(SETTINGS.logFormat, src) ?? (isTty ? "text" : "json"),
    level: read(SETTINGS.logLevel, src),
  };
}

/** Returns the machine name: FLY_MACHINE_ID, else the hostname, made safe for keys. */
export function machineName(env: Env): string {
  return sanitizeMachine(read(SETTINGS.machine, fromEnv(env)) || hostName() || "unknown");
}

/** Builds the Config for one command; throws a config error (exit 2) naming the fix. */
export function loadConfig(flags: Flags, env: Env, command: string[] = []): Config {
  const src: Sources = { flags: flags as Record<string, unknown>, env };
  const dbEntries = databaseEntries(flags.db, given(SETTINGS.db, { env })?.raw);
  const url = given(SETTINGS.url, src);
  if (!url?.raw) {
    throw configError("no store given", "Pass --url s3://BUCKET/PREFIX or set LIFEBOAT_URL");
  }
  const store = parseStoreUrl(url.raw, Deno.cwd(), read(SETTINGS.bucketName, src), url.name);
  const databases = planDatabases(dbEntries);
  const from = read(SETTINGS.from, src);
  if (from !== undefined && databases.length !== 1) {
    throw configError(
      `--from restores one backup, but ${databases.length} databases are given`,
      "Pass --from KEY with exactly one --db PATH (or PATH=NAME)",
    );
  }
  const metricsAddr = read(SETTINGS.metricsAddr, src);
  return {
    db: databases[0].path,
    store,
    databases,
    retention: read(SETTINGS.retention, src),
    ...(from !== undefined ? { from } : {}),
    backupConcurrency: read(SETTINGS.backupConcurrency, src),
    interval: read(SETTINGS.interval, src),
    drillInterval: read(SETTINGS.drillInterval, src),
    force: read(SETTINGS.force, src),
    allowEmpty: read(SETTINGS.allowEmpty, src),
    restoreCheck: read(SETTINGS.restoreCheck, src),
    command: checkCommand(command, env.PATH),
    machine: machineName(env),
    s3: s3Options(env),
    attempts: read(SETTINGS.restoreAttempts, src),
    shutdownTimeoutMs: read(SETTINGS.shutdownTimeout, src),
    appStopTimeoutMs: read(SETTINGS.appStopTimeout, src),
    // fly.io sets RELEASE_COMMAND=1 on the temporary machine that runs fly.toml's release_command.
    releaseCommand: read(SETTINGS.releaseCommand, src),
    ...(metricsAddr ? { metricsAddr } : {}),
    log: logSettings(env, Deno.stderr.isTerminal()),
  };
}
