import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "../src/duration.ts";
import {
  backupKey,
  isPastEnd,
  orderTime,
  parseKey,
  parseSeal,
  sanitizeMachine,
  sealKey,
  tierAfter,
} from "../src/store/keys.ts";
import { loadConfig, parseStoreUrl, s3Options } from "../src/config.ts";
import { exitCodeOf, LifeboatError, oneLine } from "../src/errors.ts";
import { retry } from "../src/retry.ts";
import { testClock } from "../testkit/clock.ts";
import { partSizeFor } from "../src/store/s3_upload.ts";
import { metaFromRecord, metaToRecord } from "../src/store/store.ts";

Deno.test("parseDuration accepts s/m/h/ms and combinations, rejects junk", () => {
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("250ms"), 250);
  for (const bad of ["", "5", "5x", "m5", "-5m", "5 m", "1h-", "abc"]) {
    assert.equal(parseDuration(bad), undefined, bad);
  }
  assert.equal(formatDuration(850), "850ms");
  assert.equal(formatDuration(12_300), "12.3s");
  assert.equal(formatDuration(300_000), "5m");
});

Deno.test("keys sort newest first and round-trip their time, machine and place", () => {
  const times = [1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000, 1_750_000_000_000];
  const keys = times.map((t) => backupKey("app", "recent", t, "m1"));
  const sorted = [...keys].sort();
  assert.deepEqual(sorted.map((k) => parseKey(k)!.ms), [...times].sort((a, b) => b - a));
  const k = backupKey("app", "hourly", 1_764_335_131_123, "abc/../x y");
  assert.match(
    k,
    /^backups\/hourly\/app\/\d{13}-2025-11-28T13-05-31\.123Z-abc_\.\._x_y-[0-9a-f]{6}\.sqlite3$/,
  );
  assert.deepEqual(parseKey(k), {
    ms: 1_764_335_131_123,
    machine: "abc_.._x_y",
    place: { layout: "v3", name: "app", tier: "hourly" },
  });
  const file = k.slice("backups/hourly/app/".length);
  assert.equal(parseKey("../etc/passwd"), undefined);
  assert.equal(parseKey("backups/../x.sqlite3"), undefined);
  assert.equal(parseKey(`other/${file}`), undefined);
  assert.equal(parseKey(`backups/weekly/app/${file}`), undefined, "not a tier");
  assert.equal(parseKey(`backups/recent/.app/${file}`), undefined, "not a store name");
  assert.equal(parseKey(`${k}.partial00001`), undefined);
  assert.equal(parseKey("8204125522263-2026-11-28T14-01-17.736Z-vm.sqlite3.json"), undefined);
  // The layouts of lifeboat 0.2 (backups/ at the root, NAME/backups/) and 0.1 are still read.
  assert.deepEqual(parseKey(`backups/${file}`)?.place, { layout: "root-v2" });
  assert.deepEqual(parseKey(`queue/backups/${file}`)?.place, { layout: "named-v2", name: "queue" });
  assert.deepEqual(parseKey("8204125522263-2026-11-28T14-01-17.736Z-vm-1.sqlite3"), {
    ms: 9_999_999_999_999 - 8204125522263,
    machine: "vm-1",
    place: { layout: "root-v1" },
  });
  // Seals record a streamed backup's SHA-256 in their key.
  const sha = "ab".repeat(32);
  assert.deepEqual(parseSeal(sealKey(k, sha)), { key: k, sha256: sha });
  assert.equal(parseSeal(`${k}.sha256-${"ab".repeat(31)}`), undefined);
  assert.equal(sanitizeMachine(""), "unknown");
  assert.equal(sanitizeMachine(".."), "_");
});

Deno.test("tiers: the first backup of a UTC day is daily, of an hour hourly, the rest recent", () => {
  const day = Date.UTC(2026, 11, 6);
  const H = 3_600_000;
  assert.equal(tierAfter(day + 5 * H), "daily", "the first ever");
  assert.equal(tierAfter(day + 5 * H, day - 1), "daily", "after yesterday's last");
  assert.equal(tierAfter(day + 5 * H, day + 4 * H + 59 * 60_000), "hourly");
  assert.equal(tierAfter(day + 5 * H + 300_000, day + 5 * H), "recent");
  // A clock ahead elsewhere: ordered after it, the same hour: recent.
  assert.equal(tierAfter(day + 5 * H + 1, day + 5 * H), "recent");
});

Deno.test("keys are unique within one millisecond on one machine", () => {
  const keys = Array.from(
    { length: 200 },
    () => backupKey("db", "recent", 1_764_335_131_123, "vm"),
  );
  assert.equal(new Set(keys).size, keys.length);
});

Deno.test("a new key's order time never sorts before the store's newest, whatever the clock", () => {
  const now = 1_764_335_131_123;
  assert.equal(orderTime(now), now);
  assert.equal(orderTime(now, now - 3_600_000), now, "an older newest: the clock wins");
  assert.equal(orderTime(now, now), now + 1, "same millisecond: one later");
  const yearAhead = now + 365 * 86_400_000;
  assert.equal(orderTime(now, yearAhead), yearAhead + 1, "a clock a year ahead elsewhere");
  // A key dated at the end of the scheme cannot be outdone: one clear error, not a bad key.
  assert.throws(
    () => backupKey("db", "recent", orderTime(now, 9_999_999_999_999), "m"),
    /cannot order a new backup after the store's newest one/,
  );
  assert.ok(isPastEnd(9_999_999_999_999 - 1000) && !isPastEnd(yearAhead * 2));
  const newer = backupKey("db", "recent", orderTime(now - 3_600_000, now), "behind");
  assert.ok(
    newer < backupKey("db", "recent", now, "ahead"),
    "a clock 1 h behind still sorts newest",
  );
});

Deno.test("store URLs: s3, file:// and plain paths; bad ones are config errors", () => {
  assert.deepEqual(parseStoreUrl("s3://my-bucket/app/db/"), {
    kind: "s3",
    bucket: "my-bucket",
    prefix: "app/db",
  });
  assert.deepEqual(parseStoreUrl("s3://my-bucket"), {
    kind: "s3",
    bucket: "my-bucket",
    prefix: "",
  });
  assert.deepEqual(parseStoreUrl("file:///var/backups/"), { kind: "file", dir: "/var/backups" });
  assert.deepEqual(parseStoreUrl("backups", "/srv"), { kind: "file", dir: "/srv/backups" });
  for (
    const bad of [
      "s3://Bad",
      "s3://bk",
      "s3://b..x/p",
      "s3://bucket/../x",
      "s3://bucket//x",
      "gs://x/y",
      "file://host/x",
      "",
    ]
  ) {
    assert.throws(() => parseStoreUrl(bad), (e) => exitCodeOf(e) === 2, bad);
  }
});

/** Asserts that `fn` throws an error whose one-line rendering (message + hint) matches `re`. */
function throwsLine(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e) => re.test(oneLine(e)));
}

Deno.test("config: flags win over env, defaults apply, required values are named", () => {
  const env = {
    LIFEBOAT_DB: "/data/env.db",
    LIFEBOAT_URL: "s3://bucket-a/p",
    LIFEBOAT_INTERVAL: "1h",
  };
  const c = loadConfig({ db: "/data/flag.db", interval: "30s" }, env);
  assert.equal(c.databases[0].path, "/data/flag.db");
  assert.equal(c.interval, 30_000);
  assert.deepEqual(c.store, { kind: "s3", bucket: "bucket-a", prefix: "p" });
  assert.equal(loadConfig({}, { ...env, LIFEBOAT_INTERVAL: undefined }).interval, 300_000);
  throwsLine(() => loadConfig({}, { LIFEBOAT_URL: "/x" }), /no database given.*LIFEBOAT_DB/);
  throwsLine(() => loadConfig({}, { LIFEBOAT_DB: "/x.db" }), /no store given.*LIFEBOAT_URL/);
  throwsLine(() => loadConfig({ interval: "0s" }, env), /too short/);
  throwsLine(() => loadConfig({}, { ...env, LIFEBOAT_LOG_FORMAT: "xml" }), /LIFEBOAT_LOG_FORMAT/);
});

Deno.test("s3 options: custom endpoints get path style and when_required checksums", () => {
  const aws = s3Options({});
  assert.equal(aws.endpoint, undefined);
  assert.equal(aws.forcePathStyle, false);
  assert.equal(aws.checksum, "when_supported");
  assert.equal(aws.sse, "none", "no SSE header: the bucket's default encryption applies");
  const local = s3Options({ AWS_ENDPOINT_URL_S3: "http://127.0.0.1:9000/" });
  assert.equal(local.endpoint, "http://127.0.0.1:9000");
  assert.equal(local.forcePathStyle, true);
  assert.equal(local.checksum, "when_required");
  throwsLine(() => s3Options({ AWS_ENDPOINT_URL_S3: "ftp://x" }), /not an http\(s\) URL/);
  throwsLine(() => s3Options({ LIFEBOAT_S3_SSE: "rot13" }), /LIFEBOAT_S3_SSE/);
});

Deno.test("part size keeps any file within 10,000 parts", () => {
  const MiB = 1024 * 1024;
  assert.equal(partSizeFor(10 * MiB, 8 * MiB), 8 * MiB);
  const huge = 200 * 1024 * MiB;
  const p = partSizeFor(huge, 8 * MiB);
  assert.ok(Math.ceil(huge / p) <= 10_000);
  assert.equal(p % MiB, 0);
});

Deno.test("metadata survives a round trip; malformed fields are dropped, not guessed", () => {
  const meta = {
    sha256: "a".repeat(64),
    size: 4096,
    pageSize: 4096,
    pageCount: 1,
    createdAt: "2026-11-28T00:00:00.000Z",
    version: "1.0.0",
    machine: "m",
  };
  assert.deepEqual(metaFromRecord(metaToRecord(meta)), meta);
  assert.deepEqual(metaFromRecord({ sha256: "nothex", size: "12x" }), {});
});

Deno.test("errors render as one line with their hint and exit code", () => {
  const e = new LifeboatError("bad\nthing", "fix it", 2);
  assert.equal(oneLine(e), "bad thing. fix it");
  assert.equal(exitCodeOf(e), 2);
  assert.equal(exitCodeOf(new Error("x")), 1);
});

/** A clock whose sleeps return at once and are recorded. */
const fakeClock = () => testClock(0);

Deno.test("retry backs off exponentially, gives up after the attempts, skips diagnosed errors", async () => {
  const clock = fakeClock();
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(new Error("flaky"));
    }, { attempts: 4, baseMs: 100, clock }),
    /flaky/,
  );
  assert.equal(calls, 4);
  assert.equal(clock.slept.length, 3);
  clock.slept.forEach((ms, i) => assert.ok(ms >= 50 * 2 ** i && ms <= 100 * 2 ** i, `${ms}`));

  calls = 0;
  const ok = await retry(
    () => (++calls < 3 ? Promise.reject(new Error("x")) : Promise.resolve(7)),
    {
      attempts: 5,
      baseMs: 1,
      clock,
    },
  );
  assert.equal(ok, 7);

  calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(new LifeboatError("denied", "", 1));
    }, { attempts: 5, baseMs: 1, clock }),
  );
  assert.equal(calls, 1);
});
