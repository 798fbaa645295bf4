/**
 * The store protocol under hostile answers and clocks (issue 10), in-process with injected
 * clocks and the directory store: key order, unique keys, other writers, the marker.
 * The S3-side cases (wrong answers, verification, expiry, bounded LISTs) are in
 * protocol_s3_test.ts.
 */
import assert from "node:assert/strict";
import {
  type BackupDeps,
  backupOnce as backupWith,
  type BackupState,
} from "../src/commands/backup.ts";
import { restoreDatabase } from "../src/commands/restore.ts";
import { checkListing } from "../src/store/s3.ts";
import { FileStore } from "../src/store/file.ts";
import { MARKER_NAME, parseKey } from "../src/store/keys.ts";
import { readManifest } from "../src/store/manifest.ts";
import { ManifestKeeper } from "../src/store/manifest_keeper.ts";
import type { Store } from "../src/store/store.ts";
import { backupsOf, storeWith } from "../testkit/backup_files.ts";
import { testClock } from "../testkit/clock.ts";
import { captureLogs } from "../testkit/logs.ts";
import { addRow, makeDb, readRows } from "../testkit/sqlite.ts";
import { scene } from "../testkit/scene.ts";

const HOUR = 3_600_000;
const YEAR = 365 * 24 * HOUR;
/** The store name of every scene's database here (`app.db`). */
const NAME = "app";

/** One backup of `db` as database NAME, the manifest kept as `watch` and `backup` keep it. */
function backupOnce(
  o: { db: string; machine: string },
  deps: BackupDeps,
  state: BackupState,
) {
  const manifest = new ManifestKeeper(deps.store, o.machine, () => deps.clock.now());
  return backupWith({ ...o, name: NAME }, { manifest, ...deps }, state);
}

/** Database NAME's backups, newest first. */
const newest = (store: Store, limit = 5) => backupsOf(store, NAME, limit);

/** A directory store and a database of 20 rows in a fresh temporary directory (kit scene). */
async function withScene(fn: (s: { dir: string; db: string; store: Store }) => Promise<void>) {
  const { dir, db, url } = await scene();
  makeDb(db, 20);
  await fn({ dir, db, store: new FileStore(url) });
}

/** Restores the store's newest backup into a new file and returns its last row. */
async function restoredLastRow(store: Store, dir: string, now = Date.now()): Promise<string> {
  const target = `${dir}/restored-${crypto.randomUUID()}.db`;
  const r = await restoreDatabase(
    { db: target, name: NAME, force: false, attempts: 1, retryBaseMs: 1 },
    { store, clock: testClock(now) },
  );
  assert.equal(r.outcome, "restored");
  return readRows(target).at(-1)!;
}

Deno.test("order: a machine whose clock is 1 h behind still writes the newest backup", async () => {
  await withScene(async ({ dir, db, store }) => {
    const now = Date.now();
    addRow(db, "first, by a machine with the right time");
    await backupOnce({ db, machine: "right" }, { store, clock: testClock(now) }, {});
    addRow(db, "second, by a machine 1 h behind");
    const behind = testClock(now + 60_000 - HOUR);
    const r = await backupOnce({ db, machine: "behind" }, { store, clock: behind }, {});
    const [first] = await newest(store, 1);
    assert.equal(first.key, r.key);
    assert.equal(await restoredLastRow(store, dir), "second, by a machine 1 h behind");
  });
});

Deno.test("order: a clock a year ahead elsewhere does not hide later backups; restore warns", async () => {
  await withScene(async ({ dir, db, store }) => {
    const now = Date.now();
    addRow(db, "by the machine a year ahead");
    await backupOnce({ db, machine: "ahead" }, { store, clock: testClock(now + YEAR) }, {});
    addRow(db, "later, by a machine with the right time");
    await backupOnce({ db, machine: "right" }, { store, clock: testClock(now + 60_000) }, {});
    const logs = await captureLogs();
    assert.equal(
      await restoredLastRow(store, dir, now + 120_000),
      "later, by a machine with the right time",
    );
    const [warning] = logs.withEvent("backup_in_future");
    assert.ok(warning, "restore warns about a backup dated in the future");
    assert.ok(Number(warning.properties.ms) > YEAR - 5 * 60_000);
  });
});

Deno.test("order: a clock stepped back during watch keeps later backups visible", async () => {
  await withScene(async ({ dir, db, store }) => {
    const clock = testClock();
    const state: BackupState = {};
    const keys: string[] = [];
    for (const step of [0, -2 * HOUR, -1]) { // NTP steps the clock back twice
      clock.advance(step);
      addRow(db, `backup at clock step ${step}`);
      keys.push((await backupOnce({ db, machine: "m" }, { store, clock }, state)).key!);
    }
    const order = keys.map((k) => parseKey(k)!.ms);
    assert.deepEqual([...order].sort((a, b) => a - b), order, "each key is ordered after the last");
    assert.equal(await restoredLastRow(store, dir), "backup at clock step -1");
  });
});

Deno.test("keys: two backups in the same millisecond on the same machine are both kept", async () => {
  await withScene(async ({ dir, db, store }) => {
    const frozen = testClock(1_764_335_131_123);
    addRow(db, "one");
    const a = await backupOnce({ db, machine: "m" }, { store, clock: frozen }, {});
    addRow(db, "two");
    const b = await backupOnce({ db, machine: "m" }, { store, clock: frozen }, {});
    assert.notEqual(a.key, b.key);
    const listed = await newest(store);
    assert.deepEqual(listed.map((x) => x.key), [b.key, a.key]);
    assert.equal(await restoredLastRow(store, dir), "two");
  });
});

Deno.test("other writers: a newer backup by another machine is reported, both histories kept", async () => {
  await withScene(async ({ dir, db, store }) => {
    const other = `${dir}/other.db`;
    makeDb(other, 5);
    const clock = testClock();
    const a: BackupState = {}, b: BackupState = {};
    await backupOnce({ db, machine: "machine-a" }, { store, clock }, a);
    clock.advance(1000);
    await backupOnce({ db: other, machine: "machine-b" }, { store, clock }, b);
    const logs = await captureLogs();
    clock.advance(1000);
    const again = await backupOnce({ db, machine: "machine-a" }, { store, clock }, a);
    assert.equal(again.outcome, "unchanged", "an idle app still makes no upload");
    assert.equal(again.foreign?.machine, "machine-b");
    const [line] = logs.withEvent("foreign_writer");
    assert.ok(line, "an error names the other writer");
    assert.equal(line.level, "error");
    assert.equal(line.properties.other, "machine-b");
    // Acknowledged once: no repeat until the other machine writes again.
    const quiet = await backupOnce({ db, machine: "machine-a" }, { store, clock }, a);
    assert.equal(quiet.foreign, undefined);
    assert.equal((await newest(store, 10)).length, 2, "nothing was overwritten");
  });
});

Deno.test("other writers: this process's own upload that landed although it failed is not one", async () => {
  await withScene(async ({ db, store }) => {
    const clock = testClock();
    const state: BackupState = {};
    await backupOnce({ db, machine: "m" }, { store, clock }, state);
    // SIGTERM arrives after the PUT landed, before the backup was proven: the backup fails.
    let landThenFail = true;
    const flaky = storeWith(store, {
      put: async (...args: Parameters<Store["put"]>) => {
        await store.put(...args);
        if (landThenFail) throw new Error("stopped for shutdown after the object landed");
      },
    });
    addRow(db, "changed");
    await assert.rejects(backupOnce({ db, machine: "m" }, { store: flaky, clock }, state));
    landThenFail = false;
    const logs = await captureLogs();
    const final = await backupOnce({ db, machine: "m" }, { store: flaky, clock }, state);
    assert.deepEqual(logs.withEvent("foreign_writer"), [], "its own upload is not another writer");
    assert.equal(final.foreign, undefined);
    assert.equal(final.outcome, "uploaded", "the unproven upload is made again, and proven");
  });
});

Deno.test("other writers: the first backup after a fresh start by someone else is reported", async () => {
  await withScene(async ({ dir, db, store }) => {
    const clock = testClock();
    const target = `${dir}/fresh.db`;
    const r = await restoreDatabase(
      { db: target, name: NAME, force: false, attempts: 1, retryBaseMs: 1 },
      { store, clock },
    );
    assert.equal(r.newestKey, null, "restore records that the store had no backup");
    await backupOnce({ db, machine: "intruder" }, { store, clock }, {});
    makeDb(target, 3);
    const own = await backupOnce({ db: target, machine: "me" }, { store, clock }, {
      knownNewest: r.newestKey,
    });
    assert.equal(own.foreign?.machine, "intruder");
  });
});

Deno.test("a backup deleted from under an idle app is uploaded again", async () => {
  await withScene(async ({ db, store, dir }) => {
    const clock = testClock();
    const state: BackupState = {};
    const first = await backupOnce({ db, machine: "m" }, { store, clock }, state);
    await Deno.remove(`${dir}/store/${first.key}`);
    const next = await backupOnce({ db, machine: "m" }, { store, clock }, state);
    assert.equal(next.outcome, "uploaded", "the unchanged database is stored again");
    assert.equal((await newest(store))[0].key, next.key);
  });
});

Deno.test("manifest: written with the first backup; a database it lists without backups is not 'fresh'", async () => {
  await withScene(async ({ dir, db, store }) => {
    const clock = testClock();
    assert.equal(await readManifest(store), undefined);
    const b = await backupOnce({ db, machine: "m" }, { store, clock }, {});
    const m = (await readManifest(store))!.manifest;
    assert.equal(m.machine, "m");
    assert.equal(m.format, 3);
    assert.deepEqual(m.databases.map((d) => [d.name, d.path, d.layouts]), [[NAME, db, ["v3"]]]);
    // Every backup is lost (deleted by hand, a wrong lifecycle rule): the manifest stays.
    await Deno.remove(`${dir}/store/${b.key}`);
    const target = `${dir}/r.db`;
    const restore = (allowEmpty: boolean) =>
      restoreDatabase(
        { db: target, name: NAME, force: false, attempts: 1, retryBaseMs: 1, allowEmpty },
        { store, clock },
      );
    await assert.rejects(restore(false), (err: Error & { hint?: string; exitCode?: number }) => {
      assert.match(err.message, /holds no backup of app, but the store's manifest says it had/);
      assert.match(err.hint ?? "", /--allow-empty/);
      assert.equal(err.exitCode, 1);
      return true;
    });
    await assert.rejects(Deno.stat(target), Deno.errors.NotFound);
    assert.equal((await restore(true)).outcome, "fresh", "--allow-empty starts empty on purpose");
  });
});

Deno.test("legacy: backups written by lifeboat 0.1 at the store's root are still restored", async () => {
  await withScene(async ({ dir, db, store }) => {
    const legacy = "8204125522263-2026-11-28T14-01-17.736Z-vm.sqlite3";
    addRow(db, "written by 0.1");
    const r = await backupOnce({ db, machine: "m" }, { store, clock: testClock() }, {});
    // Move the backup to the root under a 0.1 name, as an old store holds it.
    await Deno.rename(`${dir}/store/${r.key}`, `${dir}/store/${legacy}`);
    await Deno.rename(`${dir}/store/${r.key}.json`, `${dir}/store/${legacy}.json`);
    await Deno.remove(`${dir}/store/${MARKER_NAME}`);
    assert.deepEqual(await newest(store), [], "not among the database's own backups");
    // Run alone, without a name, on a store this version never wrote: it takes them.
    assert.equal(await restoredLastRow(store, dir), "written by 0.1");
    const claim = (await readManifest(store))!.manifest.root;
    // Claimed up to the order time of the key restored (the manifest records times, not keys).
    const through = new Date(parseKey(legacy)!.ms).toISOString();
    assert.deepEqual(claim, { name: NAME, through }, "the restore claimed them");
    // The next backup goes to the new layout, and sorts newer.
    addRow(db, "written by this version");
    const next = await backupOnce({ db, machine: "m" }, { store, clock: testClock() }, {});
    assert.equal(parseKey(next.key!)?.place.layout, "v3");
    assert.equal(await restoredLastRow(store, dir), "written by this version");
  });
});

Deno.test("listing answers that are not a listing of this store are errors, never 'no backups'", () => {
  const ok = { Name: "bk", Prefix: "p/backups/", IsTruncated: false, $metadata: {} };
  checkListing(ok, "bk", "p/backups/");
  const bad: [string, Parameters<typeof checkListing>[0]][] = [
    ["an HTML page (the SDK parses it to nothing)", { $metadata: {} }],
    ["an empty body", { $metadata: {} }],
    ["another bucket", { ...ok, Name: "other" }],
    ["another prefix", { ...ok, Prefix: "" }],
    ["truncated without a continuation token", { ...ok, IsTruncated: true }],
    ["a key outside the prefix", { ...ok, Contents: [{ Key: "elsewhere/x.sqlite3" }] }],
  ];
  for (const [what, page] of bad) {
    assert.throws(() => checkListing(page, "bk", "p/backups/"), /is not a listing of/, what);
  }
});
