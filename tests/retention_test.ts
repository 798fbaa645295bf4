/**
 * Issue #21, retention by the store's own lifecycle rules on every store fly users have: a
 * store without tagging whose prefix rule deletes everything (R2, Tigris), the tier schedule over
 * three days under both kinds of rules, and write-once backups (a conditional write refused).
 */
import assert from "node:assert/strict";
import { DeleteObjectCommand } from "@aws-sdk/client-s3";
import { backupOnce, type BackupState } from "../src/commands/backup.ts";
import { FileStore } from "../src/store/file.ts";
import { keptKey, parseKey, type Tier, tierAfter } from "../src/store/keys.ts";
import { Retention, type RetentionMode } from "../src/store/retention.ts";
import { SUPERSEDED_TAG } from "../src/store/store.ts";
import { storeWith } from "../testkit/backup_files.ts";
import { backupOk, runLifeboat } from "../testkit/cli.ts";
import { testClock } from "../testkit/clock.ts";
import { is, type SeenRequest } from "../testkit/s3_proxy.ts";
import { proxiedTest, scene, tempDir } from "../testkit/scene.ts";
import { addRow, makeDb, readRows } from "../testkit/sqlite.ts";

const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
/** The documented tier ages (infra's defaults): recent 2 days, hourly 14 days, daily 30 days. */
const KEEP_DAYS: Record<Tier, number> = { recent: 2, hourly: 14, daily: 30 };

proxiedTest(
  "#21(a) a store without tagging (R2), then a prefix rule deletes everything under backups/: restore gets the newest",
  async (_t, { s3, proxy }) => {
    const s = await scene({ s3, proxy, name: "notags" });
    // The store answers every tagging request as R2 does.
    proxy.faults.push({
      match: (r) => r.query.has("tagging"),
      action: { kind: "status", status: 501, code: "NotImplemented" },
    });
    makeDb(s.db, 3);
    const env = { ...s.env, LIFEBOAT_LOG_FORMAT: "json" };
    const events: { event?: string; level?: string }[] = [];
    for (const row of ["one", "two", "three", "four"]) {
      addRow(s.db, row);
      const r = await runLifeboat(["backup", "--db", s.db], env);
      assert.equal(r.code, 0, r.stderr);
      events.push(...r.lines.map((l) => JSON.parse(l)));
    }
    // Said once per process, as one line, not a warning per backup.
    const notices = events.filter((e) => e.event === "tagging_unsupported");
    assert.ok(notices.length <= 3 && notices.every((e) => e.level === "info"), notices.toString());
    assert.deepEqual(events.filter((e) => e.event === "retention_failed"), []);
    const kept = await s3.keys(s.bucket, "db/kept/");
    assert.deepEqual(kept, [`db/${keptKey("app")}`]);
    // The prefix rule expires every backup under backups/ (and no rule covers kept/).
    const client = s3.client();
    for (const key of await s3.keys(s.bucket, "db/backups/")) {
      await client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: key }));
    }
    client.destroy();
    const target = `${s.dir}/m2/app.db`;
    const r = await runLifeboat(["restore", "--db", target], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readRows(target).at(-1), "four");
  },
);

/**
 * Backs a database up at `times` (ms since the first) on an injected clock, each backup a change,
 * records the tags set, then applies each tier's lifecycle rule as the store would (by age from
 * creation; only tagged objects under tag rules): returns, per kind of rule, the keys left, and
 * the keys the documented schedule keeps.
 */
async function backupsAt(times: number[]) {
  // In memory where there is a tmpfs: 100 backups' fsyncs would otherwise dominate the test.
  const dir = await tempDir("lifeboat-test-", "/dev/shm");
  const db = `${dir}/app.db`;
  const storeDir = `${dir}/store`;
  await Deno.mkdir(storeDir);
  const inner = new FileStore(storeDir);
  const tags = new Map<string, Record<string, string>>();
  const store = storeWith(inner, {
    tag: (key, t) => {
      tags.set(key, t);
      return Promise.resolve();
    },
  });
  const start = Date.UTC(2026, 2, 1, 22, 0, 0);
  const clock = testClock(start);
  // Prefix mode tags too where the store has tagging: one run serves both kinds of rules.
  const retention = new Retention("prefix", store);
  makeDb(db, 1);
  const state: BackupState = {};
  const made: { key: string; at: number }[] = [];
  for (const t of times) {
    const at = start + t;
    clock.set(at);
    addRow(db, `at ${at}`);
    const r = await backupOnce(
      { db, name: "app", machine: "m" },
      { store, clock, retention },
      state,
    );
    made.push({ key: r.key!, at });
  }
  const now = clock.now() + MINUTE;
  // The rules: an object of tier T older than its days expires (with `tags`: only if tagged).
  const left = (mode: RetentionMode) =>
    made.filter((b) => {
      const tier = (parseKey(b.key)!.place as { tier: Tier }).tier;
      const tagged = tags.get(b.key)?.[SUPERSEDED_TAG.key] === SUPERSEDED_TAG.value;
      return !(now - b.at > KEEP_DAYS[tier] * DAY && (mode === "prefix" || tagged));
    }).map((b) => b.key);
  // The documented schedule: everything of the last 2 days, the first of each hour for 14
  // days, the first of each day for 30, and the newest always.
  const want = made.filter((b, i) => {
    const tier = tierAfter(b.at, i === 0 ? undefined : made[i - 1].at);
    return now - b.at <= KEEP_DAYS[tier] * DAY || i === made.length - 1;
  }).map((b) => b.key);
  return { made, left, want, tags, storeDir };
}

Deno.test("#21(b) three days of backups: each tier's rule leaves exactly the documented schedule, and the newest survives", async () => {
  // Over 3 days, two backups every 3 hours, 20 minutes apart: the first of its hour (or day)
  // and one more in the same hour, so every tier has backups older than 2 days.
  const times = Array.from({ length: 24 }, (_, i) => [i * 3 * HOUR, i * 3 * HOUR + 20 * MINUTE])
    .flat();
  const { made, left, want, tags, storeDir } = await backupsAt(times);
  const newest = made.at(-1)!.key;
  assert.ok(!tags.has(newest), "the newest is never tagged");
  for (const mode of ["tags", "prefix"] as const) {
    assert.deepEqual(left(mode), want, mode);
    assert.ok(left(mode).includes(newest), `${mode}: the newest survives`);
    assert.ok(left(mode).length < made.length, `${mode}: the rules thin (${left(mode).length})`);
  }
  // One daily backup per UTC day the run touched, the other first-of-hour ones hourly.
  const tiers = made.map((b) => (parseKey(b.key)!.place as { tier: Tier }).tier);
  const days = new Set(made.map((b) => Math.floor(b.at / DAY))).size;
  assert.equal(tiers.filter((t) => t === "daily").length, days);
  assert.equal(tiers.filter((t) => t === "hourly").length, 24 - days);
  assert.equal(tiers.filter((t) => t === "recent").length, 24);
  // Under prefix rules the kept copy (no rule covers kept/) holds the newest's bytes too.
  const kept = JSON.parse(await Deno.readTextFile(`${storeDir}/${keptKey("app")}.json`));
  assert.equal(kept["source-key"], newest);
});

proxiedTest(
  "#21(c) a conditional write answered 412: the backup is stored under another key and counts",
  async (_t, { s3, proxy }) => {
    const s = await scene({ s3, proxy, name: "taken" });
    makeDb(s.db, 3);
    let refused: SeenRequest | undefined;
    proxy.faults.push({
      match: (r) => {
        const hit = is.put(r) && r.headers.get("if-none-match") === "*" && !refused;
        if (hit) refused = r;
        return hit;
      },
      action: { kind: "status", status: 412, code: "PreconditionFailed" },
      times: 1,
    });
    const r = await runLifeboat(["backup", "--db", s.db], s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(refused, "a conditional PutObject was sent and refused");
    const backupPut = (x: SeenRequest) => is.put(x) && x.path.includes("/db/backups/");
    const puts = proxy.requests.filter(backupPut).map((x) => x.path);
    assert.equal(puts.length, 2, puts.join(", "));
    assert.notEqual(puts[0], puts[1], "the second PUT is under another key");
    assert.match(r.stderr, /was taken \(a conditional write refused it\): picking another key/);
    assert.doesNotMatch(r.stderr, /upload failed \(attempt/, "not counted as a failure");
    const keys = await s3.backupKeys(s.bucket, "db/");
    assert.deepEqual(keys, [puts[1].slice(puts[1].indexOf("/db/") + 1)]);
    // And every write of a backup is conditional (write-once), the manifest's too.
    await backupOk(s.db, s.env);
    const writes = proxy.requests.filter((x) => backupPut(x) || is.complete(x));
    assert.ok(writes.length > 0 && writes.every((x) => x.headers.get("if-none-match") === "*"));
  },
);
