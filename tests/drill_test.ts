/**
 * Restore drills (#21): a drill reads the newest backup back and verifies it as restore would,
 * streaming, with a file only when a SQLite check needs one; `watch` schedules them and backs up
 * at once when one fails (an object damaged in the store after upload, a store it cannot reach);
 * `lifeboat verify` runs one on demand. In-process with injected clocks and small databases,
 * except `verify`'s exit codes (the CLI) and the damaged object on S3 (moto).
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { backupOnce } from "../src/commands/backup.ts";
import { createHash } from "node:crypto";
import { drillOnce } from "../src/commands/drill.ts";
import { DrillSchedule } from "../src/commands/drill_schedule.ts";
import { restoreDatabase } from "../src/commands/restore.ts";
import { watch, type WatchOptions } from "../src/commands/watch.ts";
import { loadConfig, s3Options } from "../src/config.ts";
import { exitCodeOf, oneLine, TransientError } from "../src/errors.ts";
import { acquireLock } from "../src/lock.ts";
import { Metrics } from "../src/metrics.ts";
import { FileStore } from "../src/store/file.ts";
import { openStore } from "../src/store/open.ts";
import type { OpenedBackup, Store } from "../src/store/store.ts";
import { backupsOf, storeWith } from "../testkit/backup_files.ts";
import { baseEnv, runLifeboat } from "../testkit/cli.ts";
import { testClock } from "../testkit/clock.ts";
import { captureLogs } from "../testkit/logs.ts";
import { manualSignals } from "../testkit/signals.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { LOOSE, motoTest, scene, tempDir } from "../testkit/scene.ts";
import { makeDb, readRows } from "../testkit/sqlite.ts";

const logs = await captureLogs();

const OPTS = { attempts: 2, retryBaseMs: 1, name: "app" } as const;

/** The temporary files lifeboat has beside `db` right now. */
function tempsBeside(db: string): string[] {
  return [...Deno.readDirSync(dirname(db))].map((e) => e.name).filter((n) =>
    n.includes(".lifeboat-") && n.includes(".tmp")
  );
}

/** A directory store in a new scene with one backup of a 20-row database; returns both. */
async function backedUpStore(): Promise<
  { dir: string; db: string; store: FileStore; key: string }
> {
  const { dir, db, url } = await scene();
  makeDb(db, 20);
  const store = new FileStore(url);
  const r = await backupOnce({ db, name: "app", machine: "m" }, { store, clock: testClock() }, {});
  return { dir, db, store, key: r.key! };
}

/** `store` with its reads replaced by `open` (which gets the store's own open). */
function withOpen(
  store: Store,
  open: (key: string, inner: (key: string) => Promise<OpenedBackup>) => Promise<OpenedBackup>,
): Store {
  return storeWith(store, { open: (key) => open(key, (k) => store.open(k)) });
}

/** `opened` whose body calls `onPull` before each chunk it passes on. */
function observed(opened: OpenedBackup, onPull: () => void): OpenedBackup {
  const reader = opened.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(c) {
      onPull();
      const { value, done } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel: (r) => reader.cancel(r),
  });
  return { ...opened, body };
}

/** Overwrites bytes 4096–8191 of a directory store's backup, leaving its metadata as it was. */
async function damageFile(store: FileStore, key: string): Promise<void> {
  const path = `${store.dir}/${key}`;
  const bytes = await Deno.readFile(path);
  bytes.fill(0x55, 4096, 8192);
  await Deno.writeFile(path, bytes);
}

Deno.test("drill: a sound backup verifies as it streams; with a recorded quick_check no file is written", async () => {
  const { db, store, key } = await backedUpStore();
  const seen: string[][] = [];
  let opens = 0;
  const watched = withOpen(store, async (k, open) => {
    opens++;
    return observed(await open(k), () => seen.push(tempsBeside(db)));
  });
  const r = await drillOnce({ db, ...OPTS }, { store: watched, clock: testClock() });
  assert.equal(r.outcome, "verified", r.problem);
  assert.equal(r.key, key);
  assert.equal(r.bytes, (await Deno.stat(db)).size);
  assert.equal(opens, 1, "one stream");
  assert.ok(seen.length > 0);
  assert.deepEqual(seen.flat(), [], "hashed as it streamed: no temporary file");
});

Deno.test("drill: a check that must run reads a temporary copy beside the database, removed after", async () => {
  const { db, store } = await backedUpStore();
  let during: string[] = [];
  const watched = withOpen(store, async (k, open) => {
    return observed(await open(k), () => during = tempsBeside(db));
  });
  const r = await drillOnce({ db, ...OPTS, restoreCheck: "quick_check" }, {
    store: watched,
    clock: testClock(),
  });
  assert.equal(r.outcome, "verified", r.problem);
  assert.equal(during.length, 1, "the copy for quick_check sits beside the database");
  assert.deepEqual(tempsBeside(db), [], "and is gone afterwards");
});

Deno.test("drill: bytes changed in the store under the same key and metadata are damaged, read 3 times, named", async () => {
  const { db, store, key } = await backedUpStore();
  await damageFile(store, key);
  let opens = 0;
  const counted = withOpen(store, (k, open) => (opens++, open(k)));
  const r = await drillOnce({ db, ...OPTS }, { store: counted, clock: testClock() });
  assert.equal(r.outcome, "damaged");
  assert.equal(r.key, key);
  assert.equal(r.problem, "SHA-256 mismatch");
  assert.equal(opens, 3, "read again before it counts as damaged, as restore does");
  assert.deepEqual(tempsBeside(db), []);
  // With the SHA-256 rewritten to match, the SQLite check restore would run catches it.
  const sidecar = `${store.dir}/${key}.json`;
  const meta = JSON.parse(await Deno.readTextFile(sidecar));
  meta.sha256 = createHash("sha256").update(await Deno.readFile(`${store.dir}/${key}`)).digest(
    "hex",
  );
  delete meta.checked; // as a backup of lifeboat 0.1: restore runs quick_check
  await Deno.writeTextFile(sidecar, JSON.stringify(meta));
  const checked = await drillOnce({ db, ...OPTS }, { store, clock: testClock() });
  assert.equal(checked.outcome, "damaged");
  assert.match(checked.problem!, /^quick_check: /);
  assert.deepEqual(tempsBeside(db), [], "the copy it checked is removed");
});

Deno.test("drill: a store it cannot list or read is unreachable, not a damaged backup", async () => {
  const { db, store, key } = await backedUpStore();
  const down = () => new TransientError("the store did not answer", "try again");
  const unlisted = storeWith(store, { list: () => Promise.reject(down()) });
  const a = await drillOnce({ db, ...OPTS }, { store: unlisted, clock: testClock() });
  assert.equal(a.outcome, "unreachable");
  assert.equal(a.key, undefined);
  assert.match(a.problem!, /cannot list the backups in file:\/\/.*the store did not answer/);
  let opens = 0;
  const unreadable = withOpen(store, () => (opens++, Promise.reject(down())));
  const b = await drillOnce({ db, ...OPTS }, { store: unreadable, clock: testClock() });
  assert.equal(b.outcome, "unreachable");
  assert.equal(b.key, key);
  assert.equal(opens, 2, "retried (LIFEBOAT_RESTORE_ATTEMPTS)");
  // A body that breaks off mid-stream is the store's failure too.
  const broken = withOpen(store, async (k, open) => {
    const opened = await open(k);
    return { ...opened, body: opened.body.pipeThrough(failAfterFirstChunk()) };
  });
  const c = await drillOnce({ db, ...OPTS }, { store: broken, clock: testClock() });
  assert.equal(c.outcome, "unreachable", c.problem);
  assert.match(c.problem!, /connection reset/);
});

/** A transform that passes 100 bytes and then fails as a reset connection would. */
function failAfterFirstChunk(): TransformStream<Uint8Array, Uint8Array> {
  return new TransformStream({
    transform(chunk, c) {
      c.enqueue(chunk.subarray(0, 100));
      throw new Deno.errors.ConnectionReset("connection reset");
    },
  });
}

Deno.test("drill: an empty store is missing; a copy that cannot be written here is local", async () => {
  const { db, url } = await scene();
  const empty = await drillOnce({ db, ...OPTS }, { store: new FileStore(url), clock: testClock() });
  assert.equal(empty.outcome, "missing");
  const { store } = await backedUpStore();
  let opens = 0;
  const counted = withOpen(store, (k, open) => (opens++, open(k)));
  const nowhere = `${await tempDir()}/gone/app.db`; // its directory does not exist
  const r = await drillOnce(
    { db: nowhere, ...OPTS, restoreCheck: "quick_check" },
    { store: counted, clock: testClock() },
  );
  assert.equal(r.outcome, "local", r.problem);
  assert.equal(opens, 1, "not retried: the store is not at fault");
});

Deno.test("drill: the schedule drills after the first successful backup, then once per interval; 0 is off", async () => {
  const { db, store } = await backedUpStore();
  const clock = testClock();
  const metrics = new Metrics(clock, { interval: 1000, shutdownTimeoutMs: 1000 }).of("app");
  let backups = 0;
  const target = {
    o: { db, ...OPTS },
    location: store.location,
    metrics,
    drill: (signal: AbortSignal) => drillOnce({ db, ...OPTS }, { store, clock }, signal),
    backUpNow: () => Promise.resolve(backups++),
  };
  const never = new AbortController().signal;
  const schedule = new DrillSchedule(60_000, clock);
  logs.clear();
  await schedule.runDue([target], never);
  assert.equal(logs.withEvent("drill_verified").length, 0, "no drill before a backup succeeded");
  metrics.backedUp({ outcome: "unchanged", ms: 1, bytes: 1 });
  await schedule.runDue([target], never);
  assert.equal(logs.withEvent("drill_verified").length, 1, "after the first successful backup");
  clock.advance(59_000);
  metrics.backedUp({ outcome: "unchanged", ms: 1, bytes: 1 });
  await schedule.runDue([target], never);
  assert.equal(logs.withEvent("drill_verified").length, 1, "not again within the interval");
  clock.advance(1_000);
  await schedule.runDue([target], never);
  assert.equal(logs.withEvent("drill_verified").length, 2, "once the interval passed");
  assert.equal(backups, 0);
  const off = new DrillSchedule(0, clock);
  clock.advance(1_000_000);
  await off.runDue([target], never);
  assert.equal(logs.withEvent("drill_verified").length, 2, "LIFEBOAT_DRILL_INTERVAL=0: none");
  const stopped = new AbortController();
  stopped.abort();
  await schedule.runDue([target], stopped.signal);
  assert.equal(logs.withEvent("drill_verified").length, 2, "none once stopping");
});

/** Polls until `cond` holds; fails after `ms` (real time). */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** `watch` options for a database at `db` without an app: 1 s backups, drills every 2 s (test clock). */
function watchOptions(db: string, o: Partial<WatchOptions> = {}): WatchOptions {
  return {
    databases: [{ path: db, name: "app", explicit: false }],
    machine: "test",
    force: false,
    ...OPTS,
    interval: 1000,
    drillInterval: 2000,
    command: [],
    shutdownTimeoutMs: 30_000,
    appStopTimeoutMs: 10_000,
    ...o,
  };
}

/** Every log record of event `event` since the last clear. */
const events = (event: string) => logs.withEvent(event);

/**
 * Runs `watch` on `db` and `store` (1 s backups, drills every 2 s, on a test clock whose sleeps
 * take 20 ms) until `done` holds, then sends SIGTERM; returns its metrics once it exited 0.
 */
async function watchUntil(db: string, store: Store, done: () => boolean, what: string) {
  const clock = testClock(Date.now(), { realMs: 20 });
  const signals = manualSignals();
  const o = watchOptions(db);
  const metrics = new Metrics(clock, o, ["app"]);
  logs.clear();
  const running = watch(o, { store, clock, signals, metrics });
  try {
    await until(done, what);
  } finally {
    signals.send();
  }
  assert.equal(await running, 0);
  return metrics;
}

motoTest(
  "drill (#21 d): an object damaged in the store after upload is caught by the next drill, which uploads a fresh backup",
  async (_t, s3) => {
    const { dir, db, bucket } = await scene({ s3, name: "drill" });
    makeDb(db, 30);
    const s3opts = s3Options({
      ...s3.env,
      LIFEBOAT_ACCESS_KEY_ID: "testing",
      LIFEBOAT_SECRET_ACCESS_KEY: "testing",
    });
    const real = openStore({ kind: "s3", bucket, prefix: "db" }, s3opts);
    // The object is damaged in the store (same key, same metadata, other bytes) after the first
    // drill verified it: just before the second drill reads it.
    let opens = 0;
    const store = withOpen(real, async (key, open) => {
      if (++opens === 2) await s3.damagePage2(bucket, `db/${key}`);
      return await open(key);
    });
    const metrics = await watchUntil(
      db,
      store,
      () => events("drill_verified").length >= 2,
      "a drill after the fresh backup",
    );

    const [first, fresh] = events("backup_finished").map((r) => String(r.properties.key));
    const [failed, ...more] = events("drill_failed");
    assert.equal(more.length, 0, "one failed drill");
    assert.equal(failed.level, "error");
    assert.equal(failed.properties.outcome, "damaged");
    assert.equal(failed.properties.key, first, "the error names the damaged key");
    assert.match(
      failed.message.join(""),
      new RegExp(
        `restore drill: DAMAGED: ${first} failed verification \\(SHA-256 mismatch\\).*taking a new backup now`,
      ),
    );
    // The database never changed, yet the next backup uploaded it: not skipped as unchanged.
    const order = logs.records.map((r) => r.properties.event).filter((e) =>
      ["drill_failed", "backup_finished", "backup_unchanged"].includes(String(e))
    );
    assert.equal(order[order.indexOf("drill_failed") + 1], "backup_finished");
    assert.ok(fresh && fresh !== first, "a fresh backup under a new key");
    assert.equal(
      events("drill_verified").at(-1)!.properties.key,
      fresh,
      "and the next drill verified it",
    );

    const p = parseProm(metrics.render());
    assert.equal(
      promValue(p, "lifeboat_drill_failures_total", { db: "app", reason: "damaged" }),
      1,
    );
    assert.equal(promValue(p, "lifeboat_drill_failures_total", { reason: "unreachable" }), 0);
    assert.ok(promValue(p, "lifeboat_drill_last_success_timestamp_seconds", { db: "app" }) > 0);
    assert.equal(
      promValue(p, "lifeboat_drill_last_info", { db: "app", key: fresh, outcome: "verified" }),
      1,
    );
    // A restore now gets the fresh backup, the newest, with nothing to skip.
    assert.deepEqual(await s3.backupKeys(bucket, "db/"), [`db/${fresh}`, `db/${first}`]);
    logs.clear();
    const r = await restoreDatabase(
      { db: `${dir}/again.db`, force: false, ...OPTS },
      { store: real, clock: testClock() },
    );
    assert.equal(r.key, fresh);
    assert.deepEqual(readRows(`${dir}/again.db`), readRows(db));
  },
);

Deno.test({
  name:
    "drill: in watch, a drill that cannot reach the store says so, counts it, and backs up at once",
  ...LOOSE,
  fn: async () => {
    const { db, url } = await scene();
    makeDb(db, 20);
    const inner = new FileStore(url);
    const store = withOpen(
      inner,
      () => Promise.reject(new TransientError("no route to the store", "")),
    );
    const metrics = await watchUntil(
      db,
      store,
      () => events("backup_finished").length >= 2,
      "the backup after the drill",
    );
    const [failed] = events("drill_failed");
    assert.equal(failed.properties.outcome, "unreachable");
    assert.match(
      failed.message.join(""),
      /restore drill: UNREACHABLE: backups\/\S+: cannot read it from file:\/\/.*no route to the store.*the backup is not known to be damaged; taking a new backup now/,
    );
    const p = parseProm(metrics.render());
    assert.equal(
      promValue(p, "lifeboat_drill_failures_total", { reason: "unreachable" }) >= 1,
      true,
    );
    assert.equal(promValue(p, "lifeboat_drill_failures_total", { reason: "damaged" }), 0);
    assert.equal(
      (await backupsOf(inner, "app")).length >= 2,
      true,
      "backed up again although unchanged",
    );
  },
});

Deno.test({
  name:
    "drill: SIGTERM during a drill stops it at once; the final backup runs; release machines never drill",
  ...LOOSE,
  fn: async () => {
    const { db, url } = await scene();
    makeDb(db, 20);
    const inner = new FileStore(url);
    let opened = false;
    // A read that never brings a byte: only the shutdown can end this drill.
    const store = withOpen(inner, async (k, open) => {
      const o = await open(k);
      await o.body.cancel();
      opened = true;
      return { ...o, body: new ReadableStream<Uint8Array>({ pull: () => new Promise(() => {}) }) };
    });
    const clock = testClock(Date.now(), { realMs: 20 });
    const signals = manualSignals();
    logs.clear();
    const running = watch(watchOptions(db), { store, clock, signals });
    await until(() => opened, "the drill to start reading");
    const stoppedAt = Date.now();
    signals.send();
    assert.equal(await running, 0);
    assert.ok(Date.now() - stoppedAt < 5_000, "the drill did not hold up the shutdown");
    assert.equal(events("drill_failed").length, 0, "a drill stopped for shutdown is no failure");
    assert.ok(
      events("backup_unchanged").length + events("backup_finished").length >= 2,
      "the final backup ran",
    );
    assert.deepEqual(tempsBeside(db), []);

    // RELEASE_COMMAND: watch runs the app alone; the store is never touched.
    const untouchable = new Proxy({} as Store, {
      get: (_, p) => p === "location" ? "nowhere" : () => Promise.reject(new Error(`${String(p)}`)),
    });
    const release = await watch(watchOptions(db, { releaseCommand: true, drillInterval: 1 }), {
      store: untouchable,
      clock,
      signals: manualSignals(),
    });
    assert.equal(release, 0);
  },
});

Deno.test("config: LIFEBOAT_DRILL_INTERVAL is a duration, 24h by default, 0 or off for none", () => {
  const env = { LIFEBOAT_DB: "/data/app.db", LIFEBOAT_URL: "s3://bucket-a/p" };
  const drill = (v?: string) =>
    loadConfig({}, v === undefined ? env : { ...env, LIFEBOAT_DRILL_INTERVAL: v }).drillInterval;
  assert.equal(drill(), 24 * 3_600_000);
  assert.equal(drill("6h"), 6 * 3_600_000);
  assert.equal(drill("0"), 0);
  assert.equal(drill("off"), 0);
  assert.equal(drill("OFF"), 0);
  for (const [bad, why] of [["daily", /is not a duration/], ["1000h", /too long.*720h/]] as const) {
    assert.throws(
      () => drill(bad),
      (e) =>
        exitCodeOf(e) === 2 && why.test(oneLine(e)) && /LIFEBOAT_DRILL_INTERVAL/.test(oneLine(e)),
    );
  }
});

Deno.test({
  name:
    "cli: `lifeboat verify` exits 0 when every newest backup verifies, 1 otherwise, one line each",
  ...LOOSE,
  fn: async () => {
    const { dir, env, url } = await scene();
    const [a, b] = [`${dir}/a.sqlite3`, `${dir}/b.sqlite3`];
    makeDb(a, 10);
    makeDb(b, 10);
    const both = ["--db", a, "--db", b];
    const store = new FileStore(url);
    for (const [db, name] of [[a, "a"], [b, "b"]]) {
      await backupOnce({ db, name, machine: "m" }, { store, clock: testClock() }, {});
    }
    // It takes no lock: it runs beside a live `watch` of the same databases.
    const locks = [await acquireLock(a), await acquireLock(b)];
    try {
      const ok = await runLifeboat(["verify", ...both], env);
      assert.equal(ok.code, 0, ok.stderr);
      const lines = ok.stdout.trim().split("\n");
      assert.equal(lines.length, 2);
      assert.match(lines[0], /^a: verified backups\/\S+ \(\d+ bytes, as restore would\) in /);
      assert.match(lines[1], /^b: verified backups\/\S+ \(\d+ bytes, as restore would\) in /);

      const [key] = (await backupsOf(store, "b")).map((x) => x.key);
      await damageFile(store, key);
      const bad = await runLifeboat(["verify", ...both], env);
      assert.equal(bad.code, 1, bad.stderr);
      const [la, lb] = bad.stdout.trim().split("\n");
      assert.match(la, /^a: verified /);
      assert.equal(
        lb,
        `b: DAMAGED: ${key} failed verification (SHA-256 mismatch): restore would skip it`,
      );
    } finally {
      locks.forEach((l) => l.release());
    }
  },
});

Deno.test({
  name: "cli: `lifeboat verify` against a store it cannot reach: exit 1, UNREACHABLE, not damaged",
  ...LOOSE,
  fn: async () => {
    const dir = await tempDir();
    const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (closed.addr as Deno.NetAddr).port;
    closed.close(); // nothing listens there now
    const r = await runLifeboat(
      ["verify", "--db", `${dir}/app.db`, "--url", "s3://bucket-a/p"],
      baseEnv({
        AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${port}`,
        LIFEBOAT_ACCESS_KEY_ID: "testing",
        LIFEBOAT_SECRET_ACCESS_KEY: "testing",
        LIFEBOAT_RESTORE_ATTEMPTS: "1",
        LIFEBOAT_S3_MAX_ATTEMPTS: "1",
      }),
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(
      r.stdout,
      /^app: UNREACHABLE: cannot list the backups in s3:\/\/bucket-a\/p: .*; the backup is not known to be damaged\n$/,
    );
    assert.doesNotMatch(r.stdout, /DAMAGED/);
  },
});
