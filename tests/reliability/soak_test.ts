/**
 * The soak: many machine lifecycles in a row (SIGTERM at random moments), zero acknowledged
 * writes lost. LIFEBOAT_SOAK_MACHINES sets the count (3 in `deno test -A tests/reliability/`, 50 in
 * `deno task test:reliability`; CI runs 10, a long local run more); LIFEBOAT_LIFECYCLE_SEED replays
 * a failed run.
 */
import assert from "node:assert/strict";
import { baseEnv } from "../../testkit/cli.ts";
import { runLifecycle } from "../../testkit/lifecycle.ts";
import { startLocalS3 } from "../../testkit/moto.ts";
import { testSize } from "../../testkit/sizes.ts";
import { LOOSE, tempDir } from "../../testkit/scene.ts";

const MACHINES = testSize("LIFEBOAT_SOAK_MACHINES", 3, 50);

Deno.test({
  name: `soak: ${MACHINES} machine lifecycles, zero acknowledged writes lost`,
  ...LOOSE,
  fn: async () => {
    const s3 = await startLocalS3();
    const dir = await tempDir("lifeboat-soak-");
    try {
      await s3.createBucket("soak");
      const stats = await runLifecycle({
        machines: MACHINES,
        env: baseEnv({ ...s3.env, LIFEBOAT_URL: "s3://soak/apps/example" }),
        dir,
        writeMs: [200, 2500],
      });
      const why = `seed ${stats.seed} (LIFEBOAT_LIFECYCLE_SEED replays it)`;
      assert.equal(stats.machines, MACHINES, why);
      assert.equal(stats.lost, 0, `acknowledged writes lost; ${why}`);
      assert.ok(stats.reports.every((m) => m.code === 0), `a machine exited non-zero; ${why}`);
      const sorted = [...stats.restoreMs].sort((a, b) => a - b);
      console.log(
        `soak: ${stats.machines} lifecycles, ${stats.acked} acknowledged writes, ${stats.lost} lost, ` +
          `restore median ${sorted[Math.floor(sorted.length / 2)]} ms, max ${sorted.at(-1)} ms`,
      );
    } finally {
      await s3.stop();
    }
  },
});
