/**
 * Every setting lifeboat reads, defined once: its flag, its environment variables (lifeboat's own
 * first, then the shared ones it falls back to), its default, what it accepts and its help. Config
 * parsing (`config.ts`), the command line and `--help` (`cli.ts`) and README's tables
 * (`deno task docs`) all come from SETTINGS; `tests/settings_test.ts` fails when they disagree.
 *
 * Adding a setting is one row here (then `deno task docs`); config.ts reads it with
 * `read(SETTINGS.row, sources)` where it builds the Config. See ARCHITECTURE.md.
 */
import { DEFAULT_LIST_LIMIT, listLimit, MAX_LIST_LIMIT } from "./commands/list_limit.ts";
import { RESTORE_CHECKS } from "./snapshot/restore_check.ts";
import { RETENTION_SETTINGS } from "./store/retention.ts";
import {
  duration,
  durationOrOff,
  httpUrl,
  listenAddress,
  oneOf,
  present,
  region,
  roleArn,
  secret,
  sessionName,
  text,
  type ValueType,
  wholeNumber,
  yesNo,
} from "./setting_types.ts";

/** The commands a flag can belong to. */
export type CommandName = "backup" | "restore" | "watch" | "list" | "verify";
const EVERY_COMMAND: readonly CommandName[] = ["backup", "restore", "watch", "list", "verify"];

/** A command-line flag. */
export interface Flag {
  /** `--interval`. */
  name: `--${string}`;
  /** The value's placeholder (`DURATION`); none for a switch. */
  arg?: string;
  /** The commands that take it. */
  commands: readonly CommandName[];
  /** Given more than once, every value counts (in order). */
  repeat?: boolean;
}

/** One setting: where it comes from, what it accepts, its default and its help. */
export interface Setting<T> {
  /** Environment variables, lifeboat's own first: the first one set to non-blank text wins. */
  env: readonly string[];
  /** The flag, which wins over every variable. */
  flag?: Flag;
  type: ValueType<T>;
  /** The value when nothing is given; absent when there is none or config.ts works it out. */
  fallback?: NoInfer<T>;
  /** The default in Markdown when config.ts works it out (else `type.show(fallback)`, or –). */
  defaultIs?: string;
  /** One line of `lifeboat --help` (plain text). */
  help: string;
  /** README's "meaning" (Markdown); `help` when absent. */
  doc?: string;
}

/** Identity, but keeps whether a row has a fallback in its type (so `read` returns T, not T?). */
function row<T>(s: Setting<T> & { fallback: NoInfer<T> }): Setting<T> & { fallback: T };
function row<T>(s: Setting<T>): Setting<T>;
function row<T>(s: Setting<T>): Setting<T> {
  return s;
}

const HOUR = 3_600_000;
/** A timer beyond 2^31 ms would overflow; beyond these bounds a value is a mistake anyway. */
const MAX_INTERVAL_MS = 24 * HOUR;
const MAX_STOP_MS = HOUR;

/** Where fly.io writes the OIDC token when AWS_ROLE_ARN is set. */
export const FLY_TOKEN_FILE = "/.fly/oidc_token";
/** fly.io's machine API socket, which mints OIDC tokens on request. */
export const FLY_API_SOCKET = "/.fly/api";

/** Every setting, in the order help and README list them. */
export const SETTINGS = {
  db: row({
    env: ["LIFEBOAT_DB"],
    flag: { name: "--db", arg: "PATH", commands: EVERY_COMMAND, repeat: true },
    type: text(),
    help: "the SQLite database file; several: repeat --db or separate paths with commas in " +
      "LIFEBOAT_DB; PATH=NAME names its store prefix",
    doc: "the SQLite database file; repeat `--db` (or separate paths with `,` in `LIFEBOAT_DB`) " +
      "for several, `PATH=NAME` names its store prefix: see _Several databases_",
  }),
  url: row({
    env: ["LIFEBOAT_URL"],
    flag: { name: "--url", arg: "URL", commands: EVERY_COMMAND },
    type: text(),
    help: "the store: s3://BUCKET/PREFIX (s3:///PREFIX: the bucket in BUCKET_NAME), " +
      "file:///ABS/DIR or a directory",
    doc: "the store: `s3://BUCKET/PREFIX` (`s3:///PREFIX`: the bucket in `BUCKET_NAME`), " +
      "`file:///ABS/DIR`, or a plain directory path (`file:` needs three slashes)",
  }),
  interval: row({
    env: ["LIFEBOAT_INTERVAL"],
    flag: { name: "--interval", arg: "DURATION", commands: ["watch"] },
    type: duration(1000, MAX_INTERVAL_MS),
    fallback: 5 * 60_000,
    help: "time between backups in watch, e.g. 30s, 5m, 1h30m",
    doc: "time between backups in `watch`: `30s`, `5m`, `1h`, `1h30m`",
  }),
  drillInterval: row({
    env: ["LIFEBOAT_DRILL_INTERVAL"],
    type: durationOrOff(1000, 720 * 3_600_000),
    fallback: 24 * 3_600_000,
    help: "time between watch's restore drills of each database (after its first backup too); " +
      "off: none",
    doc: "time between `watch`'s restore drills of each database, and one after its first " +
      "backup; `off` (or `0`) turns them off (see _Restore drills_)",
  }),
  force: row({
    env: [],
    flag: { name: "--force", commands: ["restore"] },
    type: yesNo(),
    fallback: false,
    help: "restore replaces an existing database",
    doc: "`restore` replaces an existing database",
  }),
  allowEmpty: row({
    env: ["LIFEBOAT_ALLOW_EMPTY"],
    flag: { name: "--allow-empty", commands: ["restore", "watch"] },
    type: yesNo(),
    fallback: false,
    help: "restore and watch start empty although the store says the database had backups",
    doc: "`restore`/`watch` start a database empty although the store says it had backups, or " +
      "may hold them under another name (see _Adding and removing databases_)",
  }),
  from: row({
    env: [],
    flag: { name: "--from", arg: "KEY", commands: ["restore"] },
    type: text("a backup key as `lifeboat list` shows it"),
    help: "restore exactly this backup (a key as lifeboat list shows it; one database only)",
    doc: "`restore` exactly this backup, a key as `lifeboat list` shows it (one database only; " +
      "see _Adding and removing databases_)",
  }),
  limit: row({
    env: [],
    flag: { name: "--limit", arg: "N", commands: ["list"] },
    type: { ...wholeNumber(1, MAX_LIST_LIMIT), parse: (raw) => listLimit(raw) },
    fallback: DEFAULT_LIST_LIMIT,
    help: "list: backups shown per database, newest first",
    doc: "`list`: backups shown per database, newest first",
  }),
  json: row({
    env: [],
    flag: { name: "--json", commands: ["list"] },
    type: yesNo(),
    fallback: false,
    help: "list: print one JSON document instead of a table",
    doc: "`list`: one JSON array of `{db, store, key, time, size, machine, sha256?}` instead of " +
      "a table",
  }),
  sha256: row({
    env: [],
    flag: { name: "--sha256", commands: ["list"] },
    type: yesNo(),
    fallback: false,
    help: "list on S3: also read each listed backup's SHA-256 (one HEAD request per backup)",
    doc: "`list` on S3: also read each listed backup's SHA-256 (one HEAD request per backup; a " +
      "directory store always shows it)",
  }),
  logFormat: row({
    env: ["LIFEBOAT_LOG_FORMAT"],
    type: oneOf(["json", "text"] as const),
    defaultIs: "`text` on a terminal, else `json`",
    help: "log lines on stderr as JSON or text",
    doc: "one line per event on stderr",
  }),
  logLevel: row({
    env: ["LIFEBOAT_LOG_LEVEL"],
    type: oneOf(["debug", "info", "warning", "error"] as const, {
      warn: "warning",
      trace: "debug",
      fatal: "error",
    }),
    fallback: "info",
    help: "the least severe log lines shown",
  }),
  restoreAttempts: row({
    env: ["LIFEBOAT_RESTORE_ATTEMPTS"],
    type: wholeNumber(1, 100),
    fallback: 5,
    help: "tries per store request during restore before exit 1",
  }),
  backupConcurrency: row({
    env: ["LIFEBOAT_BACKUP_CONCURRENCY"],
    type: wholeNumber(1, 16),
    // Measured: BENCHMARKS.md, P12.
    fallback: 2,
    help: "with several databases, how many watch and backup back up at once",
    doc: "with several databases, how many `watch` and `backup` back up at once (BENCHMARKS.md, " +
      "P12)",
  }),
  retention: row({
    env: ["LIFEBOAT_RETENTION"],
    type: oneOf(RETENTION_SETTINGS),
    fallback: "auto",
    help: "how the newest backup survives the store's lifecycle rules: auto (AWS: tags, other " +
      "S3: prefix, directory: none), tags, prefix or none",
    doc: "how each database's newest backup survives the bucket's lifecycle rules: `auto` " +
      "(`tags` on AWS, `prefix` on other S3 endpoints, `none` for a directory), `tags`, " +
      "`prefix` (a kept copy under `kept/`), `none` (see _Retention_)",
  }),
  restoreCheck: row({
    env: ["LIFEBOAT_RESTORE_CHECK"],
    type: oneOf(RESTORE_CHECKS),
    fallback: "auto",
    help: "restore: the SQLite check after the SHA-256 matched (auto: quick_check unless the " +
      "backup recorded passing it)",
    doc: "SQLite check after the SHA-256 matched: `auto` (`quick_check` unless the backup " +
      "recorded passing it), `quick_check`, `integrity_check` (complete, slower)",
  }),
  appStopTimeout: row({
    env: ["LIFEBOAT_APP_STOP_TIMEOUT"],
    type: duration(100, MAX_STOP_MS),
    // With the final backup and a margin it fits fly.toml's kill_timeout (10 + 30 + 5 = 45s).
    fallback: 10_000,
    help: "how long the app may take to exit after the forwarded SIGTERM/SIGINT, then SIGKILL",
  }),
  shutdownTimeout: row({
    env: ["LIFEBOAT_SHUTDOWN_TIMEOUT"],
    type: duration(1000, MAX_STOP_MS),
    fallback: 30_000,
    help: "upper bound for the final backup(s) once the app has exited",
  }),
  metricsAddr: row({
    env: ["LIFEBOAT_METRICS_ADDR"],
    type: listenAddress(),
    help: "watch serves Prometheus metrics at /metrics on this address",
    doc: "serve Prometheus metrics at `/metrics` in `watch` (see _Metrics_)",
  }),
  releaseCommand: row({
    env: ["RELEASE_COMMAND"],
    type: present(),
    fallback: false,
    defaultIs: "–",
    help: "set by fly.io on release machines: watch runs the app alone (no restore, no " +
      "upload), backup refuses",
    doc: "set by fly.io on release machines: `watch` runs the app without restore or upload, " +
      "`backup` refuses",
  }),
  machine: row({
    env: ["FLY_MACHINE_ID"],
    type: text(),
    defaultIs: "the hostname",
    help: "the machine name recorded in keys and metadata",
  }),
  region: row({
    env: ["LIFEBOAT_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"],
    type: region(),
    defaultIs: "`auto` for a Tigris endpoint, else `us-east-1`",
    help: "S3 region (auto for Tigris and R2)",
    doc: "S3 region (`auto` for Tigris and R2)",
  }),
  endpoint: row({
    env: ["LIFEBOAT_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"],
    type: endpoint(),
    defaultIs: "AWS",
    help: "custom S3 endpoint; LIFEBOAT_S3_ENDPOINT=aws means AWS whatever AWS_* say",
    doc: "custom S3 endpoint; `LIFEBOAT_S3_ENDPOINT=aws` means AWS whatever the `AWS_*` " +
      "variables say",
  }),
  accessKeyId: row({
    env: ["LIFEBOAT_ACCESS_KEY_ID"],
    type: secret(),
    help: "an access key id for lifeboat alone (with LIFEBOAT_SECRET_ACCESS_KEY); wins over " +
      "AWS_ROLE_ARN and the SDK's chain (AWS_ACCESS_KEY_ID, ...)",
    doc: "an access key id for lifeboat alone, with `LIFEBOAT_SECRET_ACCESS_KEY`; they win over " +
      "`AWS_ROLE_ARN` and the SDK's chain (`AWS_ACCESS_KEY_ID`, …)",
  }),
  secretAccessKey: row({
    env: ["LIFEBOAT_SECRET_ACCESS_KEY"],
    type: secret(),
    help: "the secret of LIFEBOAT_ACCESS_KEY_ID (never printed)",
    doc: "the secret of `LIFEBOAT_ACCESS_KEY_ID` (never printed)",
  }),
  sessionToken: row({
    env: ["LIFEBOAT_SESSION_TOKEN"],
    type: secret(),
    help: "a session token for those keys, if they are temporary (never printed)",
  }),
  bucketName: row({
    env: ["BUCKET_NAME"],
    type: text("a bucket name"),
    help: "the bucket of s3:///PREFIX (a URL without a bucket); fly storage create sets it",
    doc: "the bucket of `s3:///PREFIX` (a URL without a bucket); `fly storage create` sets it",
  }),
  sse: row({
    env: ["LIFEBOAT_S3_SSE"],
    type: oneOf(["AES256", "aws:kms", "none"] as const),
    fallback: "none",
    defaultIs: "`none`: no header, the bucket's default encryption applies",
    help: "server-side encryption header sent with uploads",
  }),
  kmsKeyId: row({
    env: ["LIFEBOAT_S3_KMS_KEY_ID"],
    type: text("a KMS key id, ARN or alias"),
    help: "the KMS key for LIFEBOAT_S3_SSE=aws:kms",
    doc: "the KMS key for `LIFEBOAT_S3_SSE=aws:kms`",
  }),
  checksum: row({
    env: ["LIFEBOAT_S3_CHECKSUM"],
    type: oneOf(["when_supported", "when_required"] as const),
    defaultIs: "`when_supported` on AWS, `when_required` on custom endpoints",
    help: "the AWS SDK's checksum mode",
  }),
  forcePathStyle: row({
    env: ["LIFEBOAT_S3_FORCE_PATH_STYLE"],
    type: yesNo(),
    defaultIs: "`true` only for loopback and IP endpoints (`127.0.0.1`, `[::1]`, `localhost`)",
    help: "path-style addressing (HOST/BUCKET/KEY); otherwise virtual-hosted (BUCKET.HOST/KEY)",
    doc: "path-style addressing; otherwise virtual-hosted (`BUCKET.HOST`)",
  }),
  partSizeMb: row({
    env: ["LIFEBOAT_S3_PART_SIZE_MB"],
    type: wholeNumber(5, 512),
    fallback: 8,
    help: "multipart upload part size floor in MiB; restore's probe size on a slow link",
    doc: "multipart upload part size (floor) in MiB; restore's probe size on a slow link",
  }),
  s3Concurrency: row({
    env: ["LIFEBOAT_S3_CONCURRENCY"],
    type: wholeNumber(1, 16),
    fallback: 4,
    help: "parts of one upload in flight at once; restore's streams at once on a slow link",
  }),
  s3Timeout: row({
    env: ["LIFEBOAT_S3_TIMEOUT"],
    type: duration(100, 10 * 60_000),
    fallback: 30_000,
    help: "a request with no progress this long (connecting, or between bytes) fails and is " +
      "retried",
  }),
  s3MaxAttempts: row({
    env: ["LIFEBOAT_S3_MAX_ATTEMPTS"],
    type: wholeNumber(1, 10),
    fallback: 3,
    help: "SDK attempts per S3 request (with backoff)",
  }),
  roleArn: row({
    env: ["AWS_ROLE_ARN"],
    type: roleArn(),
    help: "the IAM role to assume with fly.io's OIDC token (see README, Running on fly.io)",
    doc: "the IAM role to assume with the OIDC token (see _Running on fly.io_)",
  }),
  tokenFile: row({
    env: ["AWS_WEB_IDENTITY_TOKEN_FILE"],
    type: text("a path"),
    fallback: FLY_TOKEN_FILE,
    defaultIs: `\`${FLY_TOKEN_FILE}\` when a role is set`,
    help: "the OIDC token file, read again at every credential renewal",
  }),
  roleSessionName: row({
    env: ["LIFEBOAT_ROLE_SESSION_NAME", "AWS_ROLE_SESSION_NAME"],
    type: sessionName(),
    defaultIs: "`lifeboat-<FLY_MACHINE_ID or hostname>` (on fly.io, fly's own " +
      "`AWS_ROLE_SESSION_NAME`)",
    help: "the STS session name",
  }),
  stsEndpoint: row({
    env: ["AWS_ENDPOINT_URL_STS"],
    type: httpUrl("https://sts.us-east-1.amazonaws.com"),
    defaultIs: "AWS",
    help: "custom STS endpoint",
  }),
  flyApiSocket: row({
    env: ["LIFEBOAT_FLY_API_SOCKET"],
    type: text("a path"),
    fallback: FLY_API_SOCKET,
    help: "fly's machine API socket, used to mint a token when the token file is missing",
  }),
} as const;

/** The S3 endpoint: an http(s) URL, or `aws` (in LIFEBOAT_S3_ENDPOINT) for AWS's own. */
function endpoint(): ValueType<string> {
  const url = httpUrl("https://fly.storage.tigris.dev");
  return {
    parse: (raw, name) =>
      raw.toLowerCase() === "aws" && name === "LIFEBOAT_S3_ENDPOINT" ? "aws" : url.parse(raw, name),
    accepts: "an http(s) URL; `aws`",
    show: url.show,
  };
}

/** Flags as commander parsed them (undefined: not given) and the environment. */
export interface Sources {
  flags?: Readonly<Record<string, unknown>>;
  env: Readonly<Record<string, string | undefined>>;
}

/** Where a setting was given: the flag's or variable's name and its text (trimmed). */
export interface Given {
  name: string;
  raw: string;
}

/** The key commander stores a flag's value under (`--allow-empty` → `allowEmpty`). */
export function flagKey(flag: Flag): string {
  return flag.name.slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Where `s` is given: its flag when given (even empty: the type then says what is wrong), else
 * the first of its variables set to non-blank text; undefined when nowhere. Never throws.
 */
export function given(s: Setting<unknown>, src: Sources): Given | undefined {
  const value = s.flag ? src.flags?.[flagKey(s.flag)] : undefined;
  if (value !== undefined && value !== false) {
    return { name: s.flag!.name, raw: value === true ? "true" : String(value).trim() };
  }
  for (const name of s.env) {
    const raw = src.env[name]?.trim();
    if (raw) return { name, raw };
  }
  return undefined;
}

/**
 * Returns the value of `s`: parsed from where it is given (see `given`), else its fallback
 * (undefined when it has none). Throws a config error (exit 2) naming the flag or variable.
 */
export function read<T>(s: Setting<T> & { fallback: T }, src: Sources): T;
export function read<T>(s: Setting<T>, src: Sources): T | undefined;
export function read<T>(s: Setting<T>, src: Sources): T | undefined {
  const at = given(s, src);
  return at ? s.type.parse(at.raw, at.name) : s.fallback;
}

/** Every row of SETTINGS, in order. */
export function allSettings(): Setting<unknown>[] {
  return Object.values(SETTINGS) as Setting<unknown>[];
}

/** The default of `s` in Markdown ("–" when there is none). */
export function defaultOf(s: Setting<unknown>): string {
  if (s.defaultIs !== undefined) return s.defaultIs;
  return s.fallback === undefined ? "–" : s.type.show(s.fallback);
}

/** Markdown without its code marks, for the terminal. */
function plain(markdown: string): string {
  return markdown.replace(/`/g, "").replace(/\b_([^_]+)_\b/g, "$1");
}

/** The help of a flag as `lifeboat COMMAND --help` shows it: help, default, variable. */
export function flagHelp(s: Setting<unknown>): string {
  const notes = [
    s.type.accepts && s.flag?.arg ? plain(s.type.accepts) : "",
    s.fallback !== undefined && s.flag?.arg ? `default ${plain(defaultOf(s))}` : "",
    s.env.length ? `env ${s.env[0]}` : "",
  ].filter(Boolean);
  return notes.length ? `${s.help} (${notes.join("; ")})` : s.help;
}

/** Help lines are wrapped to this width. */
const HELP_WIDTH = 100;

/** `words` wrapped to `width` columns, every line after the first indented by `indent`. */
function wrap(words: string, indent: number, width = HELP_WIDTH): string {
  const lines: string[] = [];
  let line = "";
  for (const word of words.split(/\s+/)) {
    if (line && indent + line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  lines.push(line);
  return lines.join(`\n${" ".repeat(indent)}`);
}

/**
 * The environment section of `lifeboat --help`: every variable of every setting, each with its
 * fallbacks, its flag, what it accepts and its default.
 */
export function environmentHelp(): string {
  const rows = allSettings().filter((s) => s.env.length > 0);
  const width = Math.max(...rows.map((s) => s.env[0].length)) + 4;
  const lines = rows.map((s) => {
    const notes = [
      s.env.length > 1 ? `else ${s.env.slice(1).join(", ")}` : "",
      s.flag ? `or ${s.flag.name}` : "",
      s.type.accepts ? plain(s.type.accepts) : "",
      defaultOf(s) !== "–" ? `default ${plain(defaultOf(s))}` : "",
    ].filter(Boolean);
    const help = `${s.help}${notes.length ? ` [${notes.join("; ")}]` : ""}`;
    return `  ${s.env[0].padEnd(width - 2)}${wrap(help, width)}`;
  });
  return [
    "Environment (flags win; a variable set to blank text counts as unset; README.md,",
    '"Environment", says more):',
    ...lines,
  ].join("\n");
}

const cell = (s: string) => s.replace(/\|/g, "\\|");
const table = (head: string[], rows: string[][]) =>
  [head, head.map(() => "-"), ...rows].map((r) => `| ${r.map(cell).join(" | ")} |`).join("\n");

/** README's flag table (CLI reference): one row per flag. */
export function flagTable(): string {
  const rows = allSettings().filter((s) => s.flag).map((s) => [
    `\`${s.flag!.name}${s.flag!.arg ? ` ${s.flag!.arg}` : ""}\``,
    s.env.map((e) => `\`${e}\``).join(", "),
    s.flag!.arg ? defaultOf(s) : "",
    s.flag!.arg ? s.type.accepts : "",
    s.doc ?? s.help,
  ]);
  return table(["flag", "env", "default", "accepts", "meaning"], rows);
}

/** README's environment table: one row per setting read from the environment. */
export function environmentTable(): string {
  const rows = allSettings().filter((s) => s.env.length > 0).map((s) => [
    [
      `\`${s.env[0]}\``,
      ...(s.env.length > 1 ? [`else ${s.env.slice(1).map((e) => `\`${e}\``).join(", ")}`] : []),
    ]
      .join(", "),
    defaultOf(s),
    s.type.accepts,
    s.doc ?? s.help,
  ]);
  return table(["variable", "default", "accepts", "meaning"], rows);
}

/** The README tables SETTINGS writes, by the name their markers carry. */
export const README_TABLES: Record<string, () => string> = {
  flags: flagTable,
  environment: environmentTable,
};

/**
 * Returns `readme` with the text between each `<!-- settings:NAME -->` and
 * `<!-- /settings:NAME -->` replaced by README_TABLES[NAME]() (unformatted: `deno task docs` runs
 * `deno fmt` after). Throws when a marker pair is missing.
 */
export function readmeWithTables(readme: string): string {
  let out = readme;
  for (const [name, render] of Object.entries(README_TABLES)) {
    const open = `<!-- settings:${name} -->`;
    const close = `<!-- /settings:${name} -->`;
    const from = out.indexOf(open);
    const to = out.indexOf(close);
    if (from < 0 || to < from) throw new Error(`README.md has no ${open} … ${close} pair`);
    out = `${out.slice(0, from + open.length)}\n\n${render()}\n\n${out.slice(to)}`;
  }
  return out;
}
