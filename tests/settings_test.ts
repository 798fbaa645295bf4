/**
 * One table drives every setting (src/settings.ts): README's flag and environment tables,
 * `lifeboat --help` and config parsing must agree with it, and every variable the sources name
 * must be in README and in `--help`. Also the bad settings of #24.2, each exit 2 with one line.
 */
import assert from "node:assert/strict";
import { loadConfig, s3Options } from "../src/config.ts";
import { exitCodeOf, oneLine } from "../src/errors.ts";
import {
  allSettings,
  defaultOf,
  README_TABLES,
  readmeWithTables,
  SETTINGS,
} from "../src/settings.ts";
import { baseEnv, ROOT, runLifeboat } from "../testkit/cli.ts";

const readme = Deno.readTextFileSync(`${ROOT}/README.md`);

/** The cells of every row of the Markdown tables in `text` (separator rows dropped). */
function cells(text: string): string[][] {
  return text.split("\n").filter((l) => l.trim().startsWith("|"))
    .map((l) =>
      l.trim().replace(/^\||\|$/g, "").split(/(?<!\\)\|/).map((c) => c.trim().replace(/\s+/g, " "))
    )
    .filter((row) => !row.every((c) => /^:?-+:?$/.test(c)));
}

/** The text between README's `<!-- settings:NAME -->` markers. */
function block(markdown: string, name: string): string {
  const from = markdown.indexOf(`<!-- settings:${name} -->`);
  const to = markdown.indexOf(`<!-- /settings:${name} -->`);
  assert.ok(from >= 0 && to > from, `README.md has no <!-- settings:${name} --> block`);
  return markdown.slice(from, to);
}

/** Every .ts file under src/ and main.ts, with its text. */
function sources(): { file: string; text: string }[] {
  const out = [{ file: "main.ts", text: Deno.readTextFileSync(`${ROOT}/main.ts`) }];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${ROOT}/${dir}`)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) walk(path);
      else if (e.name.endsWith(".ts")) {
        out.push({ file: path, text: Deno.readTextFileSync(`${ROOT}/${path}`) });
      }
    }
  };
  walk("src");
  return out;
}

/** Asserts that `fn` throws a config error (exit 2) whose one line matches `re`. */
function configFails(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e) => {
    assert.equal(exitCodeOf(e), 2, oneLine(e));
    assert.match(oneLine(e), re);
    return true;
  });
}

Deno.test("settings: README's flag and environment tables are the ones src/settings.ts writes (deno task docs)", () => {
  const written = readmeWithTables(readme);
  for (const name of Object.keys(README_TABLES)) {
    assert.deepEqual(
      cells(block(readme, name)),
      cells(block(written, name)),
      `README.md's ${name} table differs from src/settings.ts: run deno task docs`,
    );
  }
  // Every row is in them: each flag in the flag table, each variable in the environment table.
  const flags = cells(block(readme, "flags")).map((r) => r[0]).join(" ");
  const vars = cells(block(readme, "environment")).map((r) => r[0]).join(" ");
  for (const s of allSettings()) {
    if (s.flag) assert.ok(flags.includes(`\`${s.flag.name}`), `${s.flag.name} in the flag table`);
    for (const name of s.env) assert.ok(vars.includes(`\`${name}\``), `${name} in README`);
  }
});

Deno.test("settings: every LIFEBOAT_* variable the sources name is a setting, in README and in lifeboat --help", async () => {
  const named = new Set<string>();
  for (const { text } of sources()) {
    for (const m of text.matchAll(/\bLIFEBOAT_[A-Z0-9_]*[A-Z0-9_]/g)) named.add(m[0]);
  }
  assert.ok(named.has("LIFEBOAT_FLY_API_SOCKET") && named.has("LIFEBOAT_S3_TIMEOUT"), "grep works");
  const help = await runLifeboat(["--help"], baseEnv());
  assert.equal(help.code, 0, help.stderr);
  const settings = new Set(allSettings().flatMap((s) => s.env));
  // A family wildcard (`LIFEBOAT_S3_*`) in a text counts for every variable of the family.
  const mentions = (text: string, name: string) =>
    new RegExp(`\\b${name}\\b`).test(text) ||
    [...text.matchAll(/\b(LIFEBOAT_[A-Z0-9_]*_)\*/g)].some(([, family]) => name.startsWith(family));
  for (const name of named) {
    if (name.endsWith("_")) continue; // itself a family wildcard (LIFEBOAT_S3_*)
    assert.ok(settings.has(name), `${name} is named in src/ but is no row of src/settings.ts`);
    assert.ok(mentions(readme, name), `README.md does not mention ${name}`);
    assert.ok(mentions(help.stdout, name), `lifeboat --help does not mention ${name}`);
  }
  // And every variable of every row, whatever its name.
  for (const name of settings) assert.match(help.stdout, new RegExp(`\\b${name}\\b`), name);
});

Deno.test("settings: src/ reads the environment only through src/settings.ts", () => {
  const direct: string[] = [];
  // redact.ts reads secrets' values to hide them from every line: not settings.
  for (const { file, text } of sources().filter((f) => f.file !== "src/redact.ts")) {
    if (/Deno\.env\.get\(/.test(text)) direct.push(`${file}: Deno.env.get`);
    for (
      const m of text.matchAll(/\benv\??\.([A-Z][A-Z0-9_]+)\b|\benv\[["']([A-Z][A-Z0-9_]+)["']\]/g)
    ) {
      const name = m[1] ?? m[2];
      // PATH: where the app's command is looked up (supervisor.ts), not a setting of lifeboat.
      if (name !== "PATH") direct.push(`${file}: env.${name}`);
    }
  }
  assert.deepEqual(direct, [], "read it with read(SETTINGS.row, sources)");
});

Deno.test("settings: each default, as help and README print it, parses back to the value config uses", () => {
  const cfg = loadConfig({ db: "/data/db.sqlite3", url: "/backups" }, {});
  for (const s of allSettings()) {
    if (s.fallback === undefined || s.defaultIs !== undefined) continue;
    const printed = defaultOf(s).replace(/`/g, "");
    assert.deepEqual(s.type.parse(printed, s.env[0] ?? s.flag!.name), s.fallback, printed);
  }
  assert.equal(cfg.interval, SETTINGS.interval.fallback);
  assert.equal(cfg.attempts, SETTINGS.restoreAttempts.fallback);
  assert.equal(cfg.shutdownTimeoutMs, SETTINGS.shutdownTimeout.fallback);
  assert.equal(cfg.appStopTimeoutMs, SETTINGS.appStopTimeout.fallback);
  assert.equal(cfg.backupConcurrency, SETTINGS.backupConcurrency.fallback);
  assert.equal(cfg.s3.partSize, SETTINGS.partSizeMb.fallback * 1024 * 1024);
  assert.equal(cfg.s3.timeoutMs, SETTINGS.s3Timeout.fallback);
  assert.equal(cfg.s3.region, "us-east-1");
});

Deno.test("settings: a value is trimmed and blank counts as unset, for every variable alike", () => {
  const env = { LIFEBOAT_DB: " /data/db.sqlite3 ", LIFEBOAT_URL: " /backups " };
  const cfg = loadConfig({}, { ...env, LIFEBOAT_INTERVAL: " 1m ", LIFEBOAT_S3_REGION: "  " });
  assert.equal(cfg.interval, 60_000);
  assert.equal(cfg.s3.region, "us-east-1");
  assert.deepEqual(cfg.store, { kind: "file", dir: "/backups" });
  // `aws ` is AWS, and a URL with a space at either end is the URL.
  assert.equal(
    s3Options({ LIFEBOAT_S3_ENDPOINT: "aws ", AWS_REGION: "eu-west-1" }).endpoint,
    undefined,
  );
  assert.equal(
    s3Options({ LIFEBOAT_S3_ENDPOINT: " https://fly.storage.tigris.dev/ " }).endpoint,
    "https://fly.storage.tigris.dev",
  );
});

Deno.test("#24.2 bad settings are config errors (exit 2) naming the variable and the fix", () => {
  const base = { LIFEBOAT_DB: "/data/db.sqlite3", LIFEBOAT_URL: "s3://my-bucket/app" };
  const load = (env: Record<string, string>, flags = {}) => () =>
    loadConfig(flags, { ...base, ...env });
  configFails(
    load({ LIFEBOAT_S3_REGION: "us east" }),
    /^LIFEBOAT_S3_REGION "us east" is not a region\. Set LIFEBOAT_S3_REGION to the bucket's region/,
  );
  configFails(
    load({ LIFEBOAT_S3_REGION: "../x" }),
    /^LIFEBOAT_S3_REGION "\.\.\/x" is not a region/,
  );
  configFails(load({ AWS_REGION: "eu_west_1" }), /^AWS_REGION "eu_west_1" is not a region/);
  for (const ok of ["eu-west-1", "auto", "fr-par", "us-west-004", "nyc3"]) {
    assert.equal(s3Options({ LIFEBOAT_S3_REGION: ok, AWS_ENDPOINT_URL_S3: "http://h" }).region, ok);
  }
  configFails(
    load({ LIFEBOAT_S3_ENDPOINT: "https://fly storage.dev" }),
    /^LIFEBOAT_S3_ENDPOINT "https:\/\/fly storage\.dev" is not an http\(s\) URL/,
  );
  configFails(
    load({}, { url: "file:relative" }),
    /^--url=file:relative is not a store URL: file: needs three slashes\. Use file:\/\/\/ABSOLUTE\/DIR, or a plain directory path/,
  );
  configFails(
    load({ LIFEBOAT_URL: "s3:my-bucket/x" }),
    /^LIFEBOAT_URL=s3:my-bucket\/x is not a store URL: s3: needs two slashes/,
  );
  configFails(
    load({ LIFEBOAT_URL: "s3://192.168.0.1/x" }),
    /^192\.168\.0\.1 in LIFEBOAT_URL=s3:\/\/192\.168\.0\.1\/x is an IP address, not a bucket name\. For an S3 server at that address set LIFEBOAT_S3_ENDPOINT=http:\/\/192\.168\.0\.1:PORT/,
  );
  configFails(
    load({ LIFEBOAT_URL: "s3:///x", BUCKET_NAME: "10.0.0.1" }),
    /is an IP address, not a bucket name/,
  );
});

Deno.test("lifeboat with no arguments: the help on stderr, nothing on stdout, exit 2", async () => {
  const r = await runLifeboat([], baseEnv());
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /^Usage: lifeboat /);
  assert.match(r.stderr, /LIFEBOAT_URL/);
});
