/**
 * Several databases in one process (issue #13): the list's parsing and names, restore of all or
 * nothing, watch backing up each (one failing never stops the others), and `lifeboat list`.
 * The three-database lifecycle (SIGTERM under writes, nothing lost) is in
 * reliability/lifecycle_test.ts.
 */
import assert from "node:assert/strict";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { testClock } from "../testkit/clock.ts";
import { backupOk, runLifeboat, tempsLeft } from "../testkit/cli.ts";
import { is, type SeenRequest } from "../testkit/s3_proxy.ts";
import { events } from "../testkit/lifecycle.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { proxiedTest, scene as kitScene } from "../testkit/scene.ts";
import { spawnWithMetrics } from "../testkit/ports.ts";
import { addRow, integrity, makeDb, readRows } from "../testkit/sqlite.ts";
import {
  assertDistinctNames,
  databaseEntries,
  derivedName,
  planDatabases,
  resolveDatabases,
  splitMapping,
} from "../src/databases.ts";
import type { LifeboatError } from "../src/errors.ts";
import { Metrics } from "../src/metrics.ts";
import { backupKey, MARKER_NAME } from "../src/store/keys.ts";
import { MANIFEST_FORMAT, manifestToJson } from "../src/store/manifest.ts";
import { mapBounded } from "../src/commands/several.ts";
const RAILS = ["production", "production_cache", "production_queue", "production_cable"];

Deno.test("databases: entries, names and store prefixes", () => {
  assert.deepEqual(databaseEntries(undefined, " /a.db , /b.db"), ["/a.db", "/b.db"]);
  assert.deepEqual(databaseEntries(["/x,y.db", "/z.db"], "/ignored.db"), ["/x,y.db", "/z.db"]);
  assert.deepEqual(databaseEntries("/one.db", undefined), ["/one.db"]);
  for (const bad of ["/a.db,", ",/a.db", "/a.db,,/b.db", " , "]) {
    assert.throws(() => databaseEntries(undefined, bad), /empty entry|no database/);
  }
  assert.throws(() => databaseEntries(undefined, ""), /no database given/);

  assert.deepEqual(splitMapping("/data/queue.sqlite3=queue"), {
    path: "/data/queue.sqlite3",
    name: "queue",
  });
  assert.deepEqual(splitMapping("/data/a=b/app.db"), { path: "/data/a=b/app.db" });
  assert.deepEqual(splitMapping("/data/x=y.db=main"), { path: "/data/x=y.db", name: "main" });
  assert.deepEqual(splitMapping("=name"), { path: "=name" });
  assert.deepEqual(splitMapping("/data/x="), { path: "/data/x=" });
  assert.equal(derivedName("/data/queue.sqlite3"), "queue");
  assert.equal(derivedName("/data/archive.tar.db"), "archive.tar");
  assert.equal(derivedName("/data/plain"), "plain");

  // Every database has its name, alone or among others: from its file name, or given.
  const [one] = planDatabases(["/data/.weird name.db"]);
  assert.deepEqual(one, { path: "/data/.weird name.db", name: "_weird_name", explicit: false });
  const rails = planDatabases(RAILS.map((n) => `/rails/storage/${n}.sqlite3`));
  assert.deepEqual(rails.map((d) => d.name), RAILS);
  const [named] = planDatabases(["/data/db.sqlite3=main"]);
  assert.deepEqual(named, { path: "/data/db.sqlite3", name: "main", explicit: true });
  assert.equal(planDatabases(["/data/backups.db"])[0].name, "backups", "no name is reserved");

  assert.throws(
    () => assertDistinctNames(planDatabases(["/a/app.db", "/b/app.db"])),
    (e: LifeboatError) =>
      /\/a\/app\.db and \/b\/app\.db would both be stored as "app"/.test(e.message) &&
      e.hint === "Name one of them: --db /b/app.db=OTHER_NAME" && e.exitCode === 2,
  );
  assert.throws(
    () => assertDistinctNames(planDatabases(["/a/x.db=q", "/b/q.db"])),
    /both be stored as "q"/,
  );
  assert.throws(
    () => planDatabases(["/a/x.db=.q", "/b/c.db"]),
    (e: LifeboatError) =>
      /the name given to \/a\/x\.db \("\.q"\) cannot name it/.test(e.message) &&
      e.hint.startsWith("Give one with --db /a/x.db=NAME"),
  );
});

Deno.test("mapBounded: never more than the limit at once, results in order, waits for all", async () => {
  let running = 0, peak = 0;
  const out = await mapBounded([5, 1, 4, 2, 3], 2, async (n) => {
    peak = Math.max(peak, ++running);
    await new Promise((r) => setTimeout(r, n * 5));
    running--;
    return n * 10;
  });
  assert.deepEqual(out, [50, 10, 40, 20, 30]);
  assert.equal(peak, 2);
  const done: number[] = [];
  await assert.rejects(
    mapBounded([1, 2, 3], 3, async (n) => {
      await new Promise((r) => setTimeout(r, n * 10));
      if (n === 1) throw new Error("one");
      done.push(n);
    }),
    /one/,
  );
  assert.deepEqual(done, [2, 3], "the others finished before the rejection");
});

Deno.test("Metrics: one registry, one valid exposition, every sample labelled with its database", () => {
  const clock = testClock(1_000_000);
  const m = new Metrics(clock, { interval: 60_000, shutdownTimeoutMs: 30_000 }, ["a", "b"]);
  clock.advance(3_000);
  m.of("a").backedUp({ outcome: "uploaded", bytes: 10, ms: 5 });
  m.of("b").notBackedUp("failed", "boom");
  clock.advance(4_000);
  const prom = parseProm(m.render());
  assert.equal(promValue(prom, "lifeboat_backup_age_seconds", { db: "a" }), 4);
  assert.equal(promValue(prom, "lifeboat_backup_age_seconds", { db: "b" }), 7);
  assert.equal(promValue(prom, "lifeboat_backups_total", { db: "a", outcome: "uploaded" }), 1);
  assert.equal(promValue(prom, "lifeboat_backups_total", { db: "b", outcome: "failed" }), 1);
  assert.ok(prom.samples.every((s) => s.labels.db === "a" || s.labels.db === "b"));
  // Settings are repeated per database, so `age > 2 * interval` matches sample by sample.
  assert.equal(promValue(prom, "lifeboat_backup_interval_seconds", { db: "b" }), 60);
  // A database named later is registered on first use, after the others.
  m.of("c").drilled({ outcome: "damaged", key: "backups/k.sqlite3", ms: 5 });
  const more = parseProm(m.render());
  assert.deepEqual(
    more.samples.filter((s) => s.name === "lifeboat_drill_last_info").map((s) => s.labels),
    [
      { db: "a", key: "", outcome: "none" },
      { db: "b", key: "", outcome: "none" },
      { db: "c", key: "backups/k.sqlite3", outcome: "damaged" },
    ],
  );
  assert.equal(promValue(more, "lifeboat_drill_failures_total", { db: "c", reason: "damaged" }), 1);
});

Deno.test("bad database lists: one line, exit 2, nothing touched", async () => {
  const { dir, env } = await kitScene();
  await Deno.mkdir(`${dir}/a`);
  await Deno.mkdir(`${dir}/b`);
  makeDb(`${dir}/a/app.db`, 3);
  await Deno.symlink(`${dir}/a/app.db`, `${dir}/b/link.db`);
  const cases: [string, string[], Record<string, string>, RegExp][] = [
    [
      "derived names collide",
      ["backup", "--db", `${dir}/a/app.db`, "--db", `${dir}/b/app.db`],
      {},
      /would both be stored as "app".*=OTHER_NAME/,
    ],
    [
      "names collide in LIFEBOAT_DB",
      ["restore"],
      { LIFEBOAT_DB: `${dir}/a/app.db, ${dir}/b/x.db=app` },
      /would both be stored as "app"/,
    ],
    [
      "the same file twice, through a link",
      ["watch", "--db", `${dir}/a/app.db`, "--db", `${dir}/b/link.db`],
      {},
      /is given twice \(as app and as link\)/,
    ],
    ["an empty entry", ["backup"], { LIFEBOAT_DB: `${dir}/a/app.db,` }, /has an empty entry/],
    [
      "a name that cannot be a prefix",
      ["list", "--db", `${dir}/a/app.db=.x`, "--db", `${dir}/b/c.db`],
      {},
      /cannot name it in the store/,
    ],
    ["a bad --limit", ["list", "--db", `${dir}/a/app.db`, "--limit", "0"], {}, /--limit "0"/],
  ];
  for (const [what, args, extra, re] of cases) {
    const r = await runLifeboat(args, { ...env, ...extra });
    assert.equal(r.code, 2, `${what}: ${r.stderr}`);
    assert.equal(r.lines.length, 1, `${what}: one line: ${r.stderr}`);
    assert.match(r.lines[0], re, what);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, `${what}: no stack trace`);
  }
  assert.deepEqual([...Deno.readDirSync(`${dir}/store`)], [], "nothing stored");
  assert.deepEqual(readRows(`${dir}/a/app.db`).length, 3);
});

Deno.test("#20.7 #24.4 the same database through a hard link or //./ is given twice (exit 2), not two databases or a name clash", async () => {
  const { dir, env } = await kitScene();
  await Deno.mkdir(`${dir}/a`);
  await Deno.mkdir(`${dir}/b`);
  const db = `${dir}/a/app.db`;
  makeDb(db, 3);
  await Deno.link(db, `${dir}/b/hard.db`);
  await Deno.link(db, `${dir}/b/app.db`); // same file name: it used to read as a name clash
  const twice = async (entries: string[]) => {
    const specs = planDatabases(entries);
    const e = await resolveDatabases(specs).then(() => undefined, (e: LifeboatError) => e);
    assert.equal(e?.exitCode, 2, entries.join(" "));
    return e!.message;
  };
  assert.match(
    await twice([db, `${dir}/b/app.db`]),
    /app\.db is given twice \(as app and as app, through \S+\/b\/app\.db\)/,
  );
  assert.match(
    await twice([db, `${dir}/a//./app.db`]),
    /a\/app\.db is given twice \(as app and as app\)$/,
  );
  assert.match(
    await twice([db, `${dir}/a/./app.db=other`]),
    /is given twice \(as app and as other\)$/,
  );
  // A name clash between two different files is still one.
  makeDb(`${dir}/b/x.db`, 1);
  await assert.rejects(
    resolveDatabases(planDatabases([db, `${dir}/b/x.db=app`])),
    /would both be stored as "app"/,
  );
  // The whole command: a hard link is not restored as a second database.
  const r = await runLifeboat(["restore", "--force", "--db", db, "--db", `${dir}/b/hard.db`], env);
  assert.equal(r.code, 2, r.stderr);
  assert.equal(r.lines.length, 1, r.stderr);
  assert.match(
    r.lines[0],
    /a\/app\.db is given twice \(as app and as hard, through \S+\/b\/hard\.db\)\. Give each/,
  );
  assert.deepEqual([...Deno.readDirSync(`${dir}/store`)], [], "nothing stored");
  assert.equal(Deno.statSync(db).nlink, 3, "the links are still one file");
});

/** Requests about one database's sub-prefix `db/NAME/` (objects, or a listing under it). */
/** Requests about one database's places (`db/backups/TIER/NAME/`, its kept copy, 0.2's `db/NAME/`). */
const about = (name: string) => (r: SeenRequest) =>
  r.path.includes(`/${name}/`) || r.path.endsWith(`/kept/${name}.sqlite3`) ||
  (r.query.get("prefix") ?? "").includes(`/${name}/`);
/** The database name in a backup key of the v3 layout (`db/backups/TIER/NAME/FILE`). */
const nameIn = (key: string) => key.split("/").at(-2);

proxiedTest("several databases against S3", async (t, { s3, proxy }) => {
  const scene = async () => {
    const s = await kitScene({ s3, proxy, name: "multidb", restoreAttempts: 2 });
    const env = { ...s.env, LIFEBOAT_S3_MAX_ATTEMPTS: "1" };
    const paths = (root: string) => ["main", "cache", "queue"].map((n) => `${root}/${n}.sqlite3`);
    return { ...s, env, paths };
  };

  await t.step(
    "restore of three, one prefix unreachable: exit 1, the app never starts, the others stay as they are",
    async () => {
      const { dir, env, paths, bucket } = await scene();
      const src = paths(`${dir}/old`);
      await Deno.mkdir(`${dir}/old`);
      src.forEach((p, i) => makeDb(p, 5 + i));
      const b = await runLifeboat(["backup", ...src.flatMap((p) => ["--db", p])], env);
      assert.equal(b.code, 0, b.stderr);
      assert.deepEqual(
        (await s3.backupKeys(bucket, "db/")).map(nameIn).sort(),
        ["cache", "main", "queue"],
      );

      // The next machine: `cache` is already there (and differs); `queue`'s prefix fails.
      const next = paths(`${dir}/new`);
      await Deno.mkdir(`${dir}/new`);
      makeDb(next[1], 1);
      const before = await Deno.readFile(next[1]);
      proxy.faults.push({
        match: about("queue"),
        action: { kind: "status", status: 503, code: "ServiceUnavailable" },
      });
      const w = await runLifeboat(
        ["watch", ...next.flatMap((p) => ["--db", p]), "--", "sh", "-c", `touch ${dir}/started`],
        { ...env, LIFEBOAT_LOG_FORMAT: "json" },
      );
      assert.equal(w.code, 1, w.stderr);
      const evs = events(w.lines);
      assert.ok(!evs.some((e) => e.event === "child_started"), "the app never started");
      const failed = evs.find((e) => e.event === "database_failed");
      assert.equal(failed?.db, "queue", w.stderr);
      assert.match(String(evs.at(-1)?.error), /restore failed for 1 of 3 databases \(queue: /);
      assert.match(String(evs.at(-1)?.error), /Nothing was started/);
      assert.equal(evs.find((e) => e.event === "restore_finished")?.db, "main");
      assert.equal(evs.find((e) => e.event === "restore_skipped")?.path, next[1]);
      assert.deepEqual(readRows(next[0]), readRows(src[0]), "main restored and kept");
      assert.equal(integrity(next[0]), "ok");
      assert.deepEqual(await Deno.readFile(next[1]), before, "cache untouched");
      await assert.rejects(Deno.stat(next[2]), Deno.errors.NotFound, "no queue database");
      assert.deepEqual(tempsLeft(`${dir}/new`), [], "no temporary files");
      await assert.rejects(Deno.stat(`${dir}/started`), Deno.errors.NotFound);

      // `restore` says the same with exit 1; once the prefix answers again, all three are there.
      const r = await runLifeboat(["restore", ...next.flatMap((p) => ["--db", p])], env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.lines.at(-1)!, /restore failed for 1 of 3 databases \(queue: .*stay in place/);
      proxy.faults.length = 0;
      const ok = await runLifeboat(["restore", ...next.flatMap((p) => ["--db", p])], env);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual(readRows(next[2]), readRows(src[2]));
    },
  );

  await t.step(
    "watch: a database whose uploads fail never stops the others; metrics are per database",
    async () => {
      const { dir, env, paths, bucket } = await scene();
      const dbs = paths(dir);
      dbs.forEach((p) => makeDb(p, 3));
      proxy.faults.push({
        match: (r) => about("cache")(r) && (is.put(r) || is.part(r)),
        action: { kind: "status", status: 503, code: "ServiceUnavailable" },
      });
      const { w, metricsPort: port } = await spawnWithMetrics(
        ["watch", "--interval", "1s", ...dbs.flatMap((p) => ["--db", p])],
        { ...env, LIFEBOAT_LOG_FORMAT: "json" },
      );
      let scraped: string;
      try {
        await w.waitForCount(/"db":"cache","event":"backup_failed"/, 2, 60_000);
        scraped = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      } finally {
        w.proc.kill("SIGTERM");
      }
      const prom = parseProm(scraped);
      for (const db of ["main", "queue"]) {
        assert.ok(
          promValue(prom, "lifeboat_backups_total", { db, outcome: "uploaded" })! +
              promValue(prom, "lifeboat_backups_total", { db, outcome: "unchanged" })! >= 1,
          db,
        );
      }
      assert.ok(
        promValue(prom, "lifeboat_backups_total", { db: "cache", outcome: "failed" })! >= 1,
      );
      const res = await w.done();
      assert.equal(res.code, 1, "the final backup of cache failed: exit 1");
      const evs = events(res.lines);
      const finished = new Set(evs.filter((e) => e.event === "backup_finished").map((e) => e.db));
      assert.deepEqual([...finished].sort(), ["main", "queue"]);
      const names = new Set((await s3.backupKeys(bucket, "db/")).map(nameIn));
      assert.deepEqual([...names].sort(), ["main", "queue"]);
    },
  );

  await t.step("list: an empty prefix, a small one, with and without --sha256", async () => {
    const { dir, env, bucket } = await scene();
    const db = `${dir}/nowhere/app.db`; // needs no database file and takes no lock
    const empty = await runLifeboat(["list", "--db", db, "--json"], env);
    assert.equal(empty.code, 0, empty.stderr);
    assert.deepEqual(JSON.parse(empty.stdout), []);
    const table = await runLifeboat(["list", "--db", db], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`^app \\(${db}\\): no backups in s3://${bucket}/db\\n$`));
    await assert.rejects(Deno.stat(`${dir}/nowhere`), Deno.errors.NotFound, "nothing created");

    const live = `${dir}/app.db`;
    makeDb(live, 3);
    for (let i = 0; i < 3; i++) {
      addRow(live, `r${i}`);
      await backupOk(live, { ...env, FLY_MACHINE_ID: `m${i}` });
    }
    proxy.requests.length = 0;
    const r = await runLifeboat(["list", "--db", live, "--json", "--limit", "2"], env);
    assert.equal(r.code, 0, r.stderr);
    const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
    assert.deepEqual(rows.map((x) => x.machine), ["m2", "m1"], "newest first, limited");
    assert.ok(rows.every((x) => x.db === "app" && typeof x.size === "number" && !x.sha256));
    assert.ok(rows.every((x) => x.layout === "v3"));
    // One LIST per place (3 tiers, 0.2's NAME/backups/, the legacy root twice), the manifest,
    // 0.2's marker of the database and its kept copy: never a request per backup.
    const seen = proxy.requests.map((q) => is.list(q) ? "LIST" : `${q.method} ${q.path}`);
    assert.equal(seen.filter((x) => x === "LIST").length, 6, JSON.stringify(seen));
    assert.equal(seen.length, 9, JSON.stringify(seen));
    const withSha = await runLifeboat(["list", "--db", live, "--json", "--sha256"], env);
    const shas = (JSON.parse(withSha.stdout) as { sha256?: string }[]).map((x) => x.sha256);
    assert.equal(shas.length, 3);
    assert.ok(shas.every((s) => /^[0-9a-f]{64}$/.test(s ?? "")), withSha.stdout);
    const human = await runLifeboat(["list", "--db", live], env);
    const lines = human.stdout.trim().split("\n");
    assert.match(lines[0], /^app \(.*\): 3 newest in s3:\/\//);
    assert.match(lines[1], /^KEY\s+TIME\s+SIZE\s+MACHINE\s+SHA-256\s+NOTE$/);
    assert.equal(lines.length, 5);
  });

  await t.step("list: 1,000 backups are one LIST request per page", async () => {
    const { dir, env, bucket } = await scene();
    const start = Date.UTC(2026, 0, 1);
    const key = (ms: number) => backupKey("app", "recent", ms, "m");
    const keys = Array.from({ length: 1000 }, (_, i) => key(start + i * 60_000));
    const inPlace = (q: SeenRequest) =>
      is.list(q) && q.query.get("prefix") === "db/backups/recent/app/";
    await s3.putObjects(bucket, keys.map((k) => `db/${k}`));
    // With the manifest lifeboat writes beside its backups (without one, a reader first scans
    // the store for the databases it holds).
    const since = new Date(start).toISOString();
    const Body = manifestToJson({
      format: MANIFEST_FORMAT,
      createdAt: since,
      machine: "m",
      version: "test",
      databases: [{ name: "app", since, layouts: ["v3"] }],
    });
    const client = s3.client();
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: `db/${MARKER_NAME}`, Body }));
    client.destroy();
    const db = `${dir}/app.db`;
    for (const [limit, want] of [[undefined, 20], ["1000", 1000], ["5000", 1000]] as const) {
      proxy.requests.length = 0;
      const args = ["list", "--db", db, "--json", ...(limit ? ["--limit", limit] : [])];
      const r = await runLifeboat(args, env);
      assert.equal(r.code, 0, r.stderr);
      const rows = JSON.parse(r.stdout) as { key: string }[];
      assert.equal(rows.length, want);
      assert.deepEqual(rows.map((x) => x.key), keys.toReversed().slice(0, want), "newest first");
      assert.equal(
        proxy.requests.filter(inPlace).length,
        1,
        `limit ${limit}: one LIST: ${JSON.stringify(proxy.requests)}`,
      );
      assert.equal(proxy.requests.length, 9, "one LIST per place, no request per backup");
    }
    // One more backup than a page: a second LIST, with the first one's continuation token.
    const older = key(start - 60_000);
    await s3.putObjects(bucket, [`db/${older}`]);
    proxy.requests.length = 0;
    const all = await runLifeboat(["list", "--db", db, "--json", "--limit", "5000"], env);
    assert.equal(all.code, 0, all.stderr);
    const rows = JSON.parse(all.stdout) as { key: string }[];
    assert.deepEqual(rows.map((x) => x.key), [...keys.toReversed(), older]);
    assert.equal(proxy.requests.filter(inPlace).length, 2, "two pages, two LISTs");
  });
});

Deno.test("adding a database, then going back to one: each keeps its own backups whatever the count", async () => {
  const { dir, env } = await kitScene();
  const a = `${dir}/a.sqlite3`;
  makeDb(a, 7);
  await backupOk(a, env); // alone: under its name, as it will be among others
  const next = [`${dir}/n/a.sqlite3`, `${dir}/n/b.sqlite3`];
  const both = await runLifeboat(["restore", ...next.flatMap((p) => ["--db", p])], env);
  assert.equal(both.code, 0, both.stderr);
  assert.equal(readRows(next[0]).length, 7, "a restored among two");
  await assert.rejects(Deno.stat(next[1]), Deno.errors.NotFound, "b: a fresh start");
  makeDb(next[1], 2);
  addRow(next[0], "written with two");
  const up = await runLifeboat(["backup", ...next.flatMap((p) => ["--db", p])], env);
  assert.equal(up.code, 0, up.stderr);
  // Rolled back to the one-database config: the newest of a, not its first backup.
  const alone = `${dir}/m/a.sqlite3`;
  assert.equal((await runLifeboat(["restore", "--db", alone], env)).code, 0);
  assert.equal(readRows(alone).at(-1), "written with two");
});

/** A directory store holding one backup of a.sqlite3 and b.sqlite3 (`rows` each), made together. */
async function bothBackedUp(rowsA: number, rowsB: number) {
  const { dir, env } = await kitScene();
  const [a, b] = [`${dir}/a.sqlite3`, `${dir}/b.sqlite3`];
  makeDb(a, rowsA);
  makeDb(b, rowsB);
  const up = await runLifeboat(["backup", "--db", a, "--db", b], env);
  assert.equal(up.code, 0, up.stderr);
  return { dir, env, a, b };
}

Deno.test("a database run alone under a new name is not started empty while the store holds another's", async () => {
  const { dir, env } = await bothBackedUp(7, 2);
  // The store holds a and b; c alone, with no backups: it may be one of them renamed.
  const c = `${dir}/k/c.sqlite3`;
  const r = await runLifeboat(["watch", "--db", c, "--", "sh", "-c", "exit 0"], env);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.lines.at(-1)!, /c \(.*c\.sqlite3\) has no backup .* holds backups of a \(/);
  assert.match(r.lines.at(-1)!, /--db .*c\.sqlite3=a\b.*--allow-empty/);
  assert.doesNotMatch(r.stderr, /started sh/);
  await assert.rejects(Deno.stat(c), Deno.errors.NotFound, "not started empty");
  // Its old name restores it; --allow-empty starts it empty on purpose.
  assert.equal((await runLifeboat(["restore", "--db", `${c}=a`], env)).code, 0);
  assert.equal(readRows(c).length, 7);
  const fresh = await runLifeboat(["restore", "--db", `${dir}/j/c.sqlite3`, "--allow-empty"], env);
  assert.equal(fresh.code, 0, fresh.stderr);
  assert.match(fresh.stderr, /starting fresh/);
});

Deno.test("list in a directory store: SHA-256 from the metadata files, a new database is empty", async () => {
  const { dir, env, a, b } = await bothBackedUp(3, 4);
  const r = await runLifeboat(
    ["list", "--db", a, "--db", b, "--db", `${dir}/c.db`, "--json"],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { db: string; sha256?: string; store: string }[];
  assert.deepEqual(rows.map((x) => x.db), ["a", "b"]);
  assert.ok(rows.every((x) => /^[0-9a-f]{64}$/.test(x.sha256 ?? "")));
  assert.ok(rows.every((x) => x.store === `file://${dir}/store`));
  assert.deepEqual(
    [...Deno.readDirSync(`${dir}/store`)].map((e) => e.name).sort(),
    ["backups", "lifeboat.json"],
    "list created nothing",
  );
  const missing = await runLifeboat(["list", "--db", a, "--url", `${dir}/nope`], env);
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.lines.at(-1)!, /store directory .*nope does not exist/);
});
