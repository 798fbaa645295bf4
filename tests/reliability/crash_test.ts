/**
 * Crash safety: lifeboat is SIGKILLed at random points of a backup (snapshot, upload, between
 * parts) many times; every restore still yields a sound database equal to a completed backup,
 * and the next start cleans the leftovers. LIFEBOAT_CRASHES sets the count (8 in `deno test -A tests/reliability/`,
 * 50 in `deno task test:reliability`); LIFEBOAT_CRASH_SEED replays a run's kill times.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { baseEnv, runLifeboat, spawnLifeboat, tempsLeft } from "../../testkit/cli.ts";
import { startLocalS3 } from "../../testkit/moto.ts";
import { addRow, growDb, integrity, makeDb } from "../../testkit/sqlite.ts";
import { testRandom } from "../../testkit/random.ts";
import { testSize } from "../../testkit/sizes.ts";
import { LOOSE, tempDir } from "../../testkit/scene.ts";

const CRASHES = testSize("LIFEBOAT_CRASHES", 8, 50);

Deno.test({
  name: `SIGKILL during backup ${CRASHES} times: restores stay sound and equal a completed backup`,
  ...LOOSE,
  fn: async () => {
    const s3 = await startLocalS3();
    try {
      await s3.createBucket("crashes");
      const dir = await tempDir();
      const db = `${dir}/app.db`;
      makeDb(db, 10);
      growDb(db, 12); // two 8 MiB parts: kills land before, between and after parts
      const env = baseEnv({ ...s3.env, LIFEBOAT_URL: "s3://crashes/db" });

      // Learn how long one backup takes here, then kill at random points inside that window.
      const t0 = performance.now();
      assert.equal((await runLifeboat(["backup", "--db", db], env)).code, 0);
      const full = performance.now() - t0;

      const { random, replay } = testRandom("LIFEBOAT_CRASH_SEED");
      let killed = 0, completed = 1;
      for (let i = 0; i < CRASHES; i++) {
        addRow(db, `crash-round-${i}`);
        const p = spawnLifeboat(["backup", "--db", db], env);
        await new Promise((r) => setTimeout(r, random() * full * 1.1));
        try {
          p.proc.kill("SIGKILL");
        } catch { /* already exited */ }
        const res = await p.done();
        if (res.code === 0) completed++;
        else killed++;
      }
      assert.ok(
        killed >= CRASHES / 3,
        `only ${killed} of ${CRASHES} runs were killed mid-way; ${replay}`,
      );

      // Every object in the store is a backup that completed: restore the newest and check it.
      const r = await runLifeboat(["restore", "--db", `${dir}/restored/app.db`], env);
      assert.equal(r.code, 0, `${replay}\n${r.stderr}`);
      assert.equal(integrity(`${dir}/restored/app.db`), "ok", replay);
      const restored = createHash("sha256").update(await Deno.readFile(`${dir}/restored/app.db`))
        .digest("hex");
      const key = /restored (\S+) from/.exec(r.stderr)![1];
      const head = await fetch(`${s3.endpoint}/crashes/db/${key}`, { method: "HEAD" });
      assert.equal(head.headers.get("x-amz-meta-sha256"), restored, replay);

      // A crashed run's temporary files are removed by the next start (plant one from a pid
      // that cannot be running, in case no kill landed mid-snapshot).
      await Deno.writeTextFile(`${dir}/.app.db.lifeboat-4194304-deadbeef.tmp`, "partial");
      const leftovers = tempsLeft(dir).length;
      const next = await runLifeboat(["backup", "--db", db], env);
      assert.equal(next.code, 0, next.stderr);
      assert.deepEqual(tempsLeft(dir), []);
      console.log(
        `crashes: ${killed} killed mid-backup, ${completed} completed, ${leftovers} leftovers ` +
          `cleaned; ${replay}`,
      );
      await Deno.remove(dir, { recursive: true });
    } finally {
      await s3.stop();
    }
  },
});
