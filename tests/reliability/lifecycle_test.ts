/**
 * The proof of the mission: fly.io's container lifecycle played without Docker. Machines come and
 * go (fresh empty directory, `lifeboat watch -- example app`, writes, SIGTERM at a random moment)
 * against one local S3, and no acknowledged write is ever lost.
 *
 * LIFEBOAT_LIFECYCLES sets the number of machines (2 in `deno test -A tests/reliability/`, 5 in
 * `deno task test:reliability`); LIFEBOAT_LIFECYCLE_SEED replays
 * the random SIGTERM moments of a failed run (its seed is in the failure message).
 */
import assert from "node:assert/strict";
import { baseEnv, EXAMPLE_APP_CMD, runLifeboat } from "../../testkit/cli.ts";
import { events, runLifecycle } from "../../testkit/lifecycle.ts";
import { type LocalS3, startLocalS3 } from "../../testkit/moto.ts";
import { closedPort } from "../../testkit/ports.ts";
import { parseProm, promValue } from "../../testkit/prometheus.ts";
import { testSize } from "../../testkit/sizes.ts";
import { LOOSE, tempDir } from "../../testkit/scene.ts";

const MACHINES = testSize("LIFEBOAT_LIFECYCLES", 2, 5);

Deno.test({
  name: "lifecycle",
  ...LOOSE,
  fn: async (t) => {
    assert.ok(Number.isInteger(MACHINES) && MACHINES >= 2, "LIFEBOAT_LIFECYCLES is at least 2");
    const s3: LocalS3 = await startLocalS3();
    const dir = await tempDir("lifeboat-lifecycle-");
    try {
      await t.step(
        `${MACHINES} machines in a row: every acknowledged write survives SIGTERM at a random moment`,
        async () => {
          await s3.createBucket("lifecycle");
          const env = baseEnv({ ...s3.env, LIFEBOAT_URL: "s3://lifecycle/apps/example" });
          const stats = await runLifecycle({
            machines: MACHINES,
            env,
            dir: `${dir}/run`,
          });
          const why = `seed ${stats.seed} (LIFEBOAT_LIFECYCLE_SEED replays it)`;
          assert.equal(stats.machines, MACHINES, why);
          assert.equal(stats.lost, 0, `acknowledged writes lost; ${why}`);
          assert.ok(stats.acked >= MACHINES, why);

          const [first, ...rest] = stats.reports;
          // The first machine ever: an empty store is a confirmed fresh start, and the app runs.
          assert.equal(first.restore, "restore_fresh", first.lines.join("\n"));
          assert.equal(typeof first.restoreMs, "number");
          for (const m of stats.reports) {
            const where = `machine ${m.machine}; ${why}:\n${m.lines.join("\n")}`;
            assert.equal(m.code, 0, `exit code; ${where}`);
            assert.ok(m.acked > 0, `the app acknowledged writes; ${where}`);
            assert.ok(m.backups >= 1, `at least the final backup; ${where}`);
            assert.ok(!events(m.lines).some((e) => e.level === "error"), `no error; ${where}`);
          }
          // Every later machine restored the previous one's backup, and logged how long it took.
          for (const m of rest) {
            assert.equal(m.restore, "restore_finished", `machine ${m.machine}; ${why}`);
            const line = events(m.lines).find((e) => e.event === "restore_finished")!;
            assert.equal(typeof line.ms, "number");
            assert.match(
              String(line.msg),
              /^restored backups\/(?:recent|hourly|daily)\/app\/\d{13}-\S+ from s3:\/\/lifecycle\/apps\/example: \d+ bytes in \S+$/,
            );
          }
          assert.equal(stats.restoreMs.length, MACHINES - 1);
          assert.ok(stats.restoreMs.every((ms) => ms >= 0 && ms < 30_000), String(stats.restoreMs));
          // A scrape on each machine saw its restore.
          const outcome = (text: string, o: string) =>
            promValue(parseProm(text), "lifeboat_restore_outcome", { outcome: o });
          assert.equal(outcome(first.metrics, "fresh"), 1);
          for (const m of rest) assert.equal(outcome(m.metrics, "restored"), 1);
        },
      );

      await t.step(
        "Rails 8's three databases under continuous writes: SIGTERM, every write of every one on the next machine",
        async () => {
          await s3.createBucket("lifecycle-multi");
          const dbs = [
            "production.sqlite3",
            "production_cache.sqlite3",
            "production_queue.sqlite3",
          ];
          const stats = await runLifecycle({
            machines: Math.max(2, Math.min(MACHINES, 3)),
            env: baseEnv({ ...s3.env, LIFEBOAT_URL: "s3://lifecycle-multi/apps/rails" }),
            dir: `${dir}/multi`,
            dbs,
          });
          const why = `seed ${stats.seed} (LIFEBOAT_LIFECYCLE_SEED replays it)`;
          assert.equal(stats.lost, 0, `acknowledged writes lost in some database; ${why}`);
          const names = ["production", "production_cache", "production_queue"];
          for (const m of stats.reports) {
            const where = `machine ${m.machine}; ${why}:\n${m.lines.join("\n")}`;
            assert.equal(m.code, 0, `exit code; ${where}`);
            assert.ok(m.acked > 0, where);
            const evs = events(m.lines);
            assert.ok(!evs.some((e) => e.level === "error"), `no error; ${where}`);
            const restored = evs.filter((e) => String(e.event).startsWith("restore_"));
            assert.deepEqual(restored.map((e) => e.db).sort(), names, `one restore each; ${where}`);
            // The final backup of each database, after the app exited.
            const exited = evs.findIndex((e) => e.event === "child_exited");
            const finals = evs.slice(exited).filter((e) => String(e.event).startsWith("backup_"));
            assert.deepEqual(finals.map((e) => e.db).sort(), names, `one final each; ${where}`);
            const prom = parseProm(m.metrics);
            for (const db of names) {
              const outcome = m.machine === 1 ? "fresh" : "restored";
              assert.equal(
                promValue(prom, "lifeboat_restore_outcome", { db, outcome }),
                1,
                `${db}; ${where}`,
              );
            }
          }
          const keys = await s3.backupKeys("lifecycle-multi", "apps/rails/");
          for (const db of names) {
            const mine = new RegExp(`^apps/rails/backups/(?:recent|hourly|daily)/${db}/`);
            assert.ok(keys.some((k) => mine.test(k)), db);
          }
        },
      );

      await t.step(
        "a machine whose store is unreachable at start never starts the app",
        async () => {
          const port = closedPort();
          const db = `${dir}/unreachable/data/app.db`;
          const r = await runLifeboat(["watch", "--", ...EXAMPLE_APP_CMD], {
            ...baseEnv({ ...s3.env, LIFEBOAT_URL: "s3://lifecycle/apps/example" }),
            AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${closedPort()}`,
            LIFEBOAT_RESTORE_ATTEMPTS: "2",
            LIFEBOAT_LOG_FORMAT: "json",
            LIFEBOAT_DB: db,
            PORT: String(port),
            HOST: "127.0.0.1",
          });
          assert.equal(r.code, 1, r.stderr);
          const evs = events(r.lines);
          assert.ok(!evs.some((e) => e.event === "child_started"), r.stderr);
          assert.doesNotMatch(r.stdout, /example app listening/);
          assert.match(
            String(evs.at(-1)?.error),
            /cannot read s3:\/\/.*the app must not start/,
          );
          await assert.rejects(
            Deno.stat(db),
            Deno.errors.NotFound,
            "no empty database was created",
          );
          await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), "nothing listens");
        },
      );
    } finally {
      await s3.stop();
    }
  },
});
