/**
 * Issue #20, the app's deploy history: each numbered case of the issue (databases added one at a
 * time, a config rolled back, lifeboat downgraded and upgraded, a fallback, the manifest, odd
 * keys) and a short seed of the random walk (testkit/deploy_history.ts; the full walk is in
 * reliability/). A directory store, except where S3's own answers matter.
 */
import assert from "node:assert/strict";
import { GetObjectTaggingCommand } from "@aws-sdk/client-s3";
import { backupOnce, type BackupState } from "../src/commands/backup.ts";
import { restoreDatabase } from "../src/commands/restore.ts";
import { Metrics } from "../src/metrics.ts";
import { FileStore } from "../src/store/file.ts";
import { backupKey, MARKER_NAME, parseKey } from "../src/store/keys.ts";
import { ManifestKeeper } from "../src/store/manifest_keeper.ts";
import { readManifest } from "../src/store/manifest.ts";
import { Retention } from "../src/store/retention.ts";
import { backupsOf, storeWith } from "../testkit/backup_files.ts";
import { backupOk, runLifeboat } from "../testkit/cli.ts";
import { testClock } from "../testkit/clock.ts";
import { deployHistoryWalk } from "../testkit/deploy_history.ts";
import { writeLegacyBackup } from "../testkit/legacy.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { is } from "../testkit/s3_proxy.ts";
import { LOOSE, proxiedTest, scene, tempDir } from "../testkit/scene.ts";
import { addRow, makeDb, readRows } from "../testkit/sqlite.ts";

const HOUR = 3_600_000;

/** The last row of the database at `path`, or undefined when there is no database there. */
function lastRow(path: string): string | undefined {
  try {
    return Deno.statSync(path).size > 0 ? readRows(path).at(-1) : undefined;
  } catch {
    return undefined;
  }
}

/** A directory scene with a data directory `app/` for the databases (made empty by `wipe`). */
async function history() {
  const s = await scene();
  const app = `${s.dir}/app`;
  const wipe = async () => {
    await Deno.remove(app, { recursive: true }).catch(() => {});
    await Deno.mkdir(app);
  };
  await wipe();
  return { ...s, store: `${s.dir}/store`, app, wipe };
}

Deno.test({
  name:
    "#20.1 adding databases one at a time after a single-database history never starts one empty",
  ...LOOSE,
  fn: async () => {
    const { env, store, app, wipe, dir } = await history();
    const primary = `${app}/primary.sqlite3`, cache = `${app}/cache.sqlite3`;
    // lifeboat 0.2 ran primary alone: its backups at the store's root.
    makeDb(primary, 3);
    addRow(primary, "primary, by 0.2");
    const root = await writeLegacyBackup(store, primary, {
      layout: "root-v2",
      ms: Date.now() - HOUR,
    });
    // A new machine runs cache alone, by name: the root's backups may be anyone's.
    await wipe();
    const alone = await runLifeboat(["restore", "--db", `${cache}=cache`], env);
    assert.equal(alone.code, 1, alone.stderr);
    assert.match(
      alone.lines.at(-1)!,
      /cache has no backup .* root holds backups of a database that lifeboat ≤ 0\.2 ran alone, claimed by no database \(newest: backups\/.*--from KEY.*--allow-empty once/,
    );
    // Then both: refused, primary is never started empty.
    const both = ["--db", primary, "--db", `${cache}=cache`];
    const w = await runLifeboat(["watch", ...both, "--", "sh", "-c", `touch ${dir}/started`], env);
    assert.equal(w.code, 1, w.stderr);
    assert.equal(lastRow(primary), undefined, "primary not started empty");
    await assert.rejects(Deno.stat(`${dir}/started`), Deno.errors.NotFound);
    // The way the hint gives: restore primary alone (it takes the root's backups, as 0.2 did).
    assert.equal((await runLifeboat(["restore", "--db", primary], env)).code, 0);
    assert.equal(lastRow(primary), "primary, by 0.2");
    makeDb(cache, 2);
    assert.equal((await runLifeboat(["backup", ...both], env)).code, 0);
    // Any later machine gets both; primary claimed the root for good.
    await wipe();
    const later = await runLifeboat(["restore", ...both], env);
    assert.equal(later.code, 0, later.stderr);
    assert.equal(lastRow(primary), "primary, by 0.2");
    assert.equal(readRows(cache).length, 2);
    const m = (await readManifest(new FileStore(store)))!.manifest;
    assert.equal(m.root?.name, "primary");
    assert.ok(Date.parse(m.root!.through!) >= parseKey(root)!.ms);

    // The other way out, for a database that is new: --allow-empty once, then `--from`.
    await wipe();
    await Deno.remove(store, { recursive: true });
    await Deno.mkdir(store);
    makeDb(primary, 3);
    addRow(primary, "primary, by 0.2 again");
    const key = await writeLegacyBackup(store, primary, { layout: "root-v2", ms: Date.now() });
    await wipe();
    const fresh = await runLifeboat(["restore", "--db", `${cache}=cache`, "--allow-empty"], env);
    assert.equal(fresh.code, 0, fresh.stderr);
    makeDb(cache, 1);
    await backupOk(`${cache}=cache`, env);
    const refused = await runLifeboat(["restore", ...both], env);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.lines.at(-1)!, /primary has no backup .*--db \S+primary\.sqlite3 --from/);
    const claimed = await runLifeboat(["restore", "--db", primary, "--from", key], env);
    assert.equal(claimed.code, 0, claimed.stderr);
    assert.equal(lastRow(primary), "primary, by 0.2 again");
    await wipe();
    assert.equal((await runLifeboat(["restore", ...both], env)).code, 0);
    assert.equal(lastRow(primary), "primary, by 0.2 again");
  },
});

Deno.test({
  name:
    "#20.2 rolling a deploy back from three databases to one restores the newest, never the root's older backup",
  ...LOOSE,
  fn: async () => {
    const { env, store, app, wipe } = await history();
    const [primary, cache, queue] = ["primary", "cache", "queue"].map((n) => `${app}/${n}.sqlite3`);
    makeDb(primary, 3);
    addRow(primary, "before the migration");
    await writeLegacyBackup(store, primary, { layout: "root-v2", ms: Date.now() - HOUR });
    await wipe();
    // This version, the one database: it takes the root's history.
    assert.equal((await runLifeboat(["restore", "--db", primary], env)).code, 0);
    await backupOk(primary, env);
    // The migration to three, and writes.
    const three = [primary, cache, queue].flatMap((p) => ["--db", p]);
    await wipe();
    assert.equal((await runLifeboat(["restore", ...three], env)).code, 0);
    assert.equal(lastRow(primary), "before the migration");
    makeDb(cache, 1);
    makeDb(queue, 1);
    addRow(primary, "written with three");
    assert.equal((await runLifeboat(["backup", ...three], env)).code, 0);
    // Rolled back to the one-database config, on a new machine.
    await wipe();
    const back = await runLifeboat(["restore", "--db", primary], env);
    assert.equal(back.code, 0, back.stderr);
    assert.equal(lastRow(primary), "written with three");
  },
});

Deno.test({
  name:
    "#20.3 lifeboat downgraded to 0.1 or 0.2 and upgraded again: the newer root backup is never ignored",
  ...LOOSE,
  fn: async () => {
    for (const layout of ["root-v1", "root-v2"] as const) {
      const { env, store, app, wipe } = await history();
      const primary = `${app}/primary.sqlite3`;
      makeDb(primary, 3);
      addRow(primary, "by this version");
      await backupOk(primary, env);
      // The rollback: the old lifeboat backs the same database up, at the store's root.
      addRow(primary, `by ${layout}, later`);
      const root = await writeLegacyBackup(store, primary, { layout, ms: Date.now() + 60_000 });
      // Upgraded again, on a new machine: the newer root backup is not silently passed over.
      await wipe();
      const r = await runLifeboat(["restore", "--db", primary], env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(
        r.lines.at(-1)!,
        new RegExp(`newest backup backups/\\S+ .*is older than ${root}`),
      );
      assert.match(r.lines.at(-1)!, new RegExp(`--from ${root.replaceAll(".", "\\.")}`));
      assert.equal(lastRow(primary), undefined, "nothing restored");
      // `list` shows it, and the hint's command restores it and claims it.
      const list = await runLifeboat(["list", "--db", primary, "--json"], env);
      const rows = JSON.parse(list.stdout) as { db: string; key: string }[];
      assert.ok(rows.some((x) => x.db === "(root)" && x.key === root), list.stdout);
      const from = await runLifeboat(["restore", "--db", primary, "--from", root], env);
      assert.equal(from.code, 0, from.stderr);
      assert.equal(lastRow(primary), `by ${layout}, later`);
      await wipe();
      const again = await runLifeboat(["restore", "--db", primary], env);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(lastRow(primary), `by ${layout}, later`);
    }
  },
});

Deno.test("#20.4 a fallback never buries the newest backup: never superseded, logged, counted, listed", async () => {
  const { dir, db } = await scene();
  const store = new FileStore(`${dir}/store`);
  const clock = testClock();
  makeDb(db, 3);
  const state: BackupState = {};
  addRow(db, "older");
  await backupOnce({ db, name: "app", machine: "m" }, { store, clock }, state);
  clock.advance(60_000);
  addRow(db, "newest, sound in the store");
  const newest = (await backupOnce({ db, name: "app", machine: "m" }, { store, clock }, state))
    .key!;
  // Every download of the newest comes back short; every tag request is recorded.
  const tagged: string[] = [];
  const flaky = storeWith(store, {
    open: async (key) => {
      const got = await store.open(key);
      if (key !== newest) return got;
      const bytes = new Uint8Array(await new Response(got.body).arrayBuffer()).slice(0, 4096);
      return { ...got, body: new Blob([bytes]).stream() };
    },
    tag: (key, tags) => {
      tagged.push(key);
      return store.tag(key, tags);
    },
  });
  const target = `${dir}/machine2/app.db`;
  const r = await restoreDatabase(
    { db: target, name: "app", force: false, attempts: 1, retryBaseMs: 1, machine: "m2" },
    { store: flaky, clock },
  );
  assert.equal(lastRow(target), "older", "the fallback");
  assert.deepEqual(r.bypassed?.map((b) => b.key), [newest]);
  const metrics = new Metrics(clock, { interval: 60_000, shutdownTimeoutMs: 30_000 }, ["app"]);
  metrics.of("app").restored(r);
  assert.equal(
    promValue(parseProm(metrics.render()), "lifeboat_restore_bypassed_backups", { db: "app" }),
    1,
  );
  // The manifest remembers it, `list` marks it.
  const m = (await readManifest(store))!.manifest;
  assert.deepEqual(m.databases.find((d) => d.name === "app")?.bypassed?.map((b) => b.key), [
    newest,
  ]);
  const list = await runLifeboat(
    ["list", "--db", `${target}=app`, "--url", `${dir}/store`, "--json"],
    { PATH: Deno.env.get("PATH")!, AWS_EC2_METADATA_DISABLED: "true" },
  );
  const rows = JSON.parse(list.stdout) as { key: string; bypassed?: string }[];
  assert.match(rows.find((x) => x.key === newest)?.bypassed ?? "", /size|SHA-256/, list.stdout);
  // The app writes; the next backup continues from "older" and never supersedes the newest.
  addRow(target, "written after the fallback");
  const retention = new Retention("tags", flaky);
  const after = await backupOnce(
    { db: target, name: "app", machine: "m2" },
    { store: flaky, clock, retention },
    { knownNewest: r.newestKey, basedOn: r.key },
  );
  assert.equal(after.outcome, "uploaded");
  assert.ok(!tagged.includes(newest), `never superseded: ${tagged}`);
  assert.deepEqual(tagged, [], "nothing continued from the newest: nothing superseded");
});

Deno.test({
  name: "#20.4 watch logs the backup a restore passed over at error level, naming it",
  ...LOOSE,
  fn: async () => {
    const { env, dir, db } = await scene();
    makeDb(db, 3);
    addRow(db, "older");
    await backupOk(db, env);
    addRow(db, "newest");
    await backupOk(db, env);
    // The newest backup's file is damaged in place: its SHA-256 no longer matches.
    const [newest] = await backupsOf(new FileStore(`${dir}/store`), "app");
    const path = `${dir}/store/${newest.key}`;
    const bytes = await Deno.readFile(path);
    bytes.fill(0x55, 4096, 8192);
    await Deno.writeFile(path, bytes);
    const target = `${dir}/m2/app.db`;
    const r = await runLifeboat(
      ["watch", "--db", target, "--", "sh", "-c", "exit 0"],
      { ...env, LIFEBOAT_LOG_FORMAT: "json" },
    );
    assert.equal(r.code, 0, r.stderr);
    const line = r.lines.map((l) => JSON.parse(l)).find((e) => e.event === "restore_bypassed");
    assert.equal(line?.level, "error", r.stderr);
    assert.match(String(line?.bypassed), new RegExp(newest.key.replaceAll(".", "\\.")));
  },
});

Deno.test("#20.5 the manifest: written again when deleted under watch, validated, bounded, never printed raw", async () => {
  const { dir, db, env } = await scene();
  const storeDir = `${dir}/store`;
  const store = new FileStore(storeDir);
  const clock = testClock();
  const manifest = new ManifestKeeper(store, "m", () => clock.now());
  const state: BackupState = {};
  makeDb(db, 3);
  const first = await backupOnce(
    { db, name: "app", machine: "m" },
    { store, clock, manifest },
    state,
  );
  await Deno.remove(`${storeDir}/${MARKER_NAME}`);
  // The next interval (the database unchanged) writes it again.
  const idle = await backupOnce(
    { db, name: "app", machine: "m" },
    { store, clock, manifest },
    state,
  );
  assert.equal(idle.outcome, "unchanged");
  assert.deepEqual((await readManifest(store))?.manifest.databases.map((d) => d.name), ["app"]);
  // The backups disappear: a restore refuses to start empty.
  await Deno.remove(`${storeDir}/${first.key}`);
  const target = `${dir}/m2/app.db`;
  const gone = await runLifeboat(["restore", "--db", target], env);
  assert.equal(gone.code, 1, gone.stderr);
  assert.match(gone.lines.at(-1)!, /holds no backup of app, but the store's manifest says it had/);
  // A manifest of another format, another shape, or too big: exit 1, one line, nothing done.
  const cases: [string, RegExp][] = [
    [
      JSON.stringify({ format: 9, createdAt: "2026-01-01T00:00:00Z", machine: "m" }),
      /format 9, written by a newer lifeboat/,
    ],
    [
      JSON.stringify({
        format: 3,
        createdAt: "2026-01-01T00:00:00Z",
        machine: "m",
        databases: [{ name: "../x" }],
      }),
      /is not a lifeboat manifest \(databases\[0\]\)/,
    ],
    ["x".repeat(200_000), /is 200000 bytes, more than the 64 KiB lifeboat reads of it/],
  ];
  for (const [text, re] of cases) {
    await Deno.writeTextFile(`${storeDir}/${MARKER_NAME}`, text);
    const r = await runLifeboat(["restore", "--db", target], env);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.lines.length, 1, r.stderr);
    assert.match(r.lines[0], re);
    assert.equal(lastRow(target), undefined);
  }
  // Its fields never reach a terminal raw: an ANSI escape in a path is shown escaped.
  await Deno.writeTextFile(
    `${storeDir}/${MARKER_NAME}`,
    JSON.stringify({
      format: 3,
      createdAt: "2026-01-01T00:00:00Z",
      machine: "m\u001b[31m",
      version: "x",
      databases: [{
        name: "old",
        since: "2026-01-01T00:00:00Z",
        layouts: ["v3"],
        path: `${target}\u001b[2J`,
      }],
    }),
  );
  const escaped = await runLifeboat(["restore", "--db", target], env);
  assert.equal(escaped.code, 1, escaped.stderr);
  assert.ok(!escaped.stderr.includes("\u001b"), escaped.stderr);
});

proxiedTest(
  "#20.6 odd keys in a database's place: a bounded listing, and a foreign key dated 2286 never stops a backup",
  async (_t, { s3, proxy }) => {
    const s = await scene({ s3, proxy, name: "oddkeys" });
    makeDb(s.db, 3);
    addRow(s.db, "real");
    await backupOk(s.db, s.env);
    // 1,001 objects that almost parse, sorting before every backup, and a key dated 2286.
    const base = Date.now() + 1e9;
    const almost = Array.from(
      { length: 1_001 },
      (_, i) => `db/${backupKey("app", "recent", base + i, "m")}.partial00001`,
    );
    const end = `db/${backupKey("app", "recent", 9_999_999_999_000, "foreign")}`;
    await s3.putObjects(s.bucket, [...almost, end]);
    addRow(s.db, "after the odd keys");
    proxy.reset();
    const b = await runLifeboat(["backup", "--db", s.db], s.env);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stderr, /is not a lifeboat backup of this database .*passed over for ordering/);
    const recent = proxy.requests.filter((r) =>
      is.list(r) && r.query.get("prefix") === "db/backups/recent/app/"
    );
    assert.ok(recent.length <= 2, `LISTs of the crowded place: ${recent.length}`);
    // A restore skips both kinds, and restores the newest real backup.
    const target = `${s.dir}/m2/app.db`;
    const r = await runLifeboat(["restore", "--db", target], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lastRow(target), "after the odd keys");
    const tags = await s3.client().send(
      new GetObjectTaggingCommand({ Bucket: s.bucket, Key: end }),
    );
    assert.deepEqual(tags.TagSet ?? [], [], "the foreign key was left alone");
  },
);

Deno.test("deploy history: a short seeded walk (the full one is in reliability/)", async () => {
  const seed = Number(Deno.env.get("LIFEBOAT_HISTORY_SEED") ?? 7);
  const report = await deployHistoryWalk(seed, 12, await tempDir());
  assert.ok(report.boots > 0);
});
