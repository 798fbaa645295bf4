/** Local safety: a full disk, a second lifeboat on the same database, and private file modes. */
import assert from "node:assert/strict";
import { assertOneLineError, runLifeboat, spawnLifeboat, tempsLeft } from "../testkit/cli.ts";
import { DatabaseSync } from "node:sqlite";
import { growDb, makeDb } from "../testkit/sqlite.ts";
import { LOOSE, scene } from "../testkit/scene.ts";

/** Mounting a tmpfs needs root: as another user the test is skipped, and says so in its name. */
const ROOT_USER = Deno.uid() === 0;

Deno.test({
  name: "disk full during restore: exit 1 with a clear line, target untouched, temp removed" +
    (ROOT_USER ? "" : " (skipped: needs root to mount a tmpfs; ci.yml runs it with sudo)"),
  ignore: !ROOT_USER,
  ...LOOSE,
  fn: async () => {
    const { dir, env } = await scene({ restoreAttempts: 3 });
    makeDb(`${dir}/app.db`, 10);
    growDb(`${dir}/app.db`, 4);
    assert.equal((await runLifeboat(["backup", "--db", `${dir}/app.db`], env)).code, 0);
    const small = `${dir}/small`;
    await Deno.mkdir(small);
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "size=1m", "tmpfs", small],
    }).output();
    assert.ok(
      mount.success,
      `this test needs root to mount a 1 MiB tmpfs: ${new TextDecoder().decode(mount.stderr)}`,
    );
    try {
      // An existing (small) database that --force would replace must survive the failure.
      makeDb(`${small}/app.db`, 3);
      const before = await Deno.readFile(`${small}/app.db`);
      const r = await runLifeboat(["restore", "--force", "--db", `${small}/app.db`], env);
      // One line: no retries for a full disk.
      assertOneLineError(
        r,
        1,
        /disk full while restoring \S+ \(\d+ bytes\) into .*small.*Free disk space/,
      );
      assert.deepEqual(await Deno.readFile(`${small}/app.db`), before);
      assert.deepEqual(tempsLeft(small), []);
    } finally {
      await new Deno.Command("umount", { args: [small] }).output();
    }
  },
});

Deno.test({
  name: "a second lifeboat on the same database refuses instead of racing",
  ...LOOSE,
  fn: async () => {
    const { db, env } = await scene();
    makeDb(db, 10);
    const w = spawnLifeboat(["watch", "--db", db, "--interval", "1h"], env);
    await w.waitForLine(/watching/);
    for (const cmd of [["backup"], ["restore", "--force"], ["watch"]]) {
      const r = await runLifeboat([...cmd, "--db", db], env);
      assertOneLineError(
        r,
        1,
        new RegExp(`another lifeboat process \\(pid ${w.proc.pid}\\) is already working on`),
      );
    }
    assert.equal((await w.stop()).code, 0);
    // Once it is gone the lock is free again, even though its file stays.
    assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
  },
});

Deno.test({
  name: "#24.4 the lock is the database's own: refused after the lock file is deleted, through " +
    "a hard link or //./, also after a restore replaced the file; never blocks the app, another " +
    "database beside it, or the next run after a SIGKILL",
  ...LOOSE,
  fn: async () => {
    const { dir, db, env } = await scene();
    makeDb(db, 10);
    makeDb(`${dir}/other.db`, 3);
    await Deno.link(db, `${dir}/hard.db`);
    const w = spawnLifeboat(["watch", "--db", db, "--interval", "1h"], env);
    await w.waitForLine(/watching/);
    // Earlier versions locked this file: deleting it let a second lifeboat in.
    await Deno.remove(`${dir}/.app.db.lifeboat.lock`).catch(() => {});
    const refusedBy = (pid: number) =>
      new RegExp(`another lifeboat process \\(pid ${pid}\\) is already working on`);
    // (A symlink is resolved to the same path: container_test's #11.4 case.)
    const [dotted, hard, other] = await Promise.all(
      [`${dir}//./app.db`, `${dir}/hard.db`, `${dir}/other.db`]
        .map((p) => runLifeboat(["backup", "--db", p], env)),
    );
    // (Before, the first locked a new lock file and ran beside watch: exit 0.)
    assertOneLineError(dotted, 1, refusedBy(w.proc.pid));
    assertOneLineError(hard, 1, refusedBy(w.proc.pid));
    assert.equal(other.code, 0, `a database beside it has a lock of its own: ${other.stderr}`);
    // The app (SQLite's own fcntl locks) writes, even exclusively, without waiting.
    const app = new DatabaseSync(db, { timeout: 0 });
    app.exec("BEGIN EXCLUSIVE; INSERT INTO t(body) VALUES ('the app writes'); COMMIT");
    app.close();

    // A holder killed outright leaves nothing that blocks the next run; and a watch that
    // restores renames a new file over its database: that file is locked from the start.
    assert.equal((await w.stop("SIGKILL")).code, 137);
    // (It restores other.db's backup, given its name: the store holds no other yet.)
    const restored = `${dir}/restored.db`;
    const w2 = spawnLifeboat(["watch", "--db", `${restored}=other`, "--interval", "1h"], env);
    assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
    await w2.waitForLine(/watching/);
    assert.match(w2.lines.join("\n"), /restored \S+ from/);
    assertOneLineError(
      await runLifeboat(["restore", "--force", "--db", `${restored}=other`], env),
      1,
      refusedBy(w2.proc.pid),
    );
    assert.equal((await w2.stop()).code, 0);
  },
});

Deno.test("backups and restored databases are private (0600)", async () => {
  const { dir, env } = await scene();
  makeDb(`${dir}/app.db`, 10);
  await Deno.chmod(`${dir}/app.db`, 0o644);
  assert.equal((await runLifeboat(["backup", "--db", `${dir}/app.db`], env)).code, 0);
  // Every file of the store: the manifest, and each backup and its metadata in backups/TIER/NAME/.
  const files = (d: string): string[] =>
    [...Deno.readDirSync(d)].flatMap((e) =>
      e.isDirectory ? files(`${d}/${e.name}`) : [`${d}/${e.name}`]
    );
  const stored = files(`${dir}/store`);
  assert.ok(stored.some((f) => f.endsWith(".sqlite3")), `no backup among ${stored}`);
  for (const f of stored) assert.equal(Deno.statSync(f).mode! & 0o777, 0o600, f);
  assert.equal((await runLifeboat(["restore", "--db", `${dir}/r/app.db`], env)).code, 0);
  assert.equal(Deno.statSync(`${dir}/r/app.db`).mode! & 0o777, 0o600);
  // --force keeps the mode of the database it replaces.
  assert.equal((await runLifeboat(["restore", "--force", "--db", `${dir}/app.db`], env)).code, 0);
  assert.equal(Deno.statSync(`${dir}/app.db`).mode! & 0o777, 0o644);
});
