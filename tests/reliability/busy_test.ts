/**
 * Backups of a database that another process writes to without pause: no restart livelock,
 * every snapshot sound. LIFEBOAT_BUSY_MB and LIFEBOAT_BUSY_BACKUPS: 16 MiB and 4 backups in
 * `deno test -A tests/reliability/`, 200 MiB and 20 in `deno task test:reliability`.
 */
import assert from "node:assert/strict";
import { systemClock } from "../../src/clock.ts";
import { backupOnce } from "../../src/commands/backup.ts";
import { FileStore } from "../../src/store/file.ts";
import { restoreOk, ROOT, spawnLifeboat, startUntil } from "../../testkit/cli.ts";
import { growDb, integrity, makeDb, readRows } from "../../testkit/sqlite.ts";
import { testSize } from "../../testkit/sizes.ts";
import { LOOSE, scene, tempDir } from "../../testkit/scene.ts";

const MB = testSize("LIFEBOAT_BUSY_MB", 16, 200);
const BACKUPS = testSize("LIFEBOAT_BUSY_BACKUPS", 4, 20);

/** Starts the fixture writer on `db` and resolves once it is committing. */
async function startWriter(db: string, pauseMs = 0) {
  const started = await startUntil(
    [Deno.execPath(), "run", "-A", `${ROOT}/tests/fixtures/writer.ts`, db, String(pauseMs)],
    "writer ready",
  );
  const { proc, reader: lines } = started;
  let out = started.seen;
  return {
    async stop(): Promise<number> {
      proc.kill("SIGTERM");
      while (true) {
        const { value, done } = await lines.read();
        if (done) break;
        out += value;
      }
      await proc.status;
      return Number(/commits (\d+)/.exec(out)?.[1] ?? 0);
    },
  };
}

Deno.test({
  name: `busy database: ${BACKUPS} backups of ${MB} MiB under a continuous writer all complete`,
  ...LOOSE,
  fn: async () => {
    const dir = await tempDir();
    const db = `${dir}/app.db`;
    makeDb(db, 10);
    growDb(db, MB);
    await Deno.mkdir(`${dir}/store`);
    const store = new FileStore(`${dir}/store`);
    const writer = await startWriter(db);
    const seen = new Set<number>();
    try {
      for (let i = 0; i < BACKUPS; i++) {
        const r = await backupOnce(
          { db, name: "app", machine: "busy" },
          { store, clock: systemClock },
          {},
        );
        assert.equal(r.outcome, "uploaded");
        const file = `${dir}/store/${r.key}`;
        assert.equal(integrity(file), "ok", `backup ${i} is not sound`);
        const db2 = readRows(file).length;
        seen.add(db2);
        await Deno.remove(file);
        await Deno.remove(`${file}.json`);
      }
    } finally {
      const commits = await writer.stop();
      assert.ok(commits > 0, "the writer never committed");
    }
    assert.ok(seen.size > 1, "every backup saw the same rows: the writer was blocked");
  },
});

Deno.test({
  name: "non-WAL database: a warning says how to switch, backups stay sound under writes",
  ...LOOSE,
  fn: async () => {
    const { dir, db, env } = await scene();
    makeDb(db, 1000, false);
    // A writer that never pauses holds SQLite's lock nearly all the time in rollback-journal mode:
    // a reader (any backup) then waits for a gap it rarely gets, and the backup fails after
    // 10 s (SNAPSHOT_LOCK_TIMEOUT_MS), loudly. That is what the warning is for; this app pauses 2 ms.
    const writer = await startWriter(db, 2);
    const w = spawnLifeboat(["watch", "--db", db, "--interval", "1s"], env);
    try {
      await w.waitForLine(/not in WAL mode.*PRAGMA journal_mode=WAL/);
      await w.waitForCount(/backup finished/, 2);
    } finally {
      await writer.stop();
      w.proc.kill("SIGTERM");
    }
    const res = await w.done();
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.lines.filter((l) => /not in WAL mode/.test(l)).length, 1, "warn once");
    await restoreOk(`${dir}/r/app.db`, env);
    assert.equal(integrity(`${dir}/r/app.db`), "ok");
    assert.deepEqual(readRows(`${dir}/r/app.db`), readRows(db));
  },
});
