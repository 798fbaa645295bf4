/**
 * The deploy-history walk at full size (issue #20): at least 200 steps over several seeds, in
 * both retention modes (testkit/deploy_history.ts). `LIFEBOAT_HISTORY_SEEDS=1,2,3` and
 * `LIFEBOAT_HISTORY_STEPS=N` choose the seeds and the steps per seed; a failure names its seed
 * and steps, and `LIFEBOAT_HISTORY_SEEDS=<seed>` replays it. Small:
 * `LIFEBOAT_HISTORY_STEPS=20 deno test -A tests/reliability/deploy_history_test.ts`.
 */
import assert from "node:assert/strict";
import { deployHistoryWalk } from "../../testkit/deploy_history.ts";
import { tempDir } from "../../testkit/scene.ts";

const SEEDS = (Deno.env.get("LIFEBOAT_HISTORY_SEEDS") ?? "1,2,3,4").split(",").map(Number);
const STEPS = Number(Deno.env.get("LIFEBOAT_HISTORY_STEPS") ?? 50);

Deno.test(`deploy history: ${SEEDS.length} seeds × ${STEPS} steps, every boot restores the newest or refuses with a hint`, async () => {
  let boots = 0, refusals = 0;
  for (const seed of SEEDS) {
    const report = await deployHistoryWalk(seed, STEPS, await tempDir());
    boots += report.boots;
    refusals += report.refusals.length;
    console.log(
      `seed ${seed}: ${report.steps.length} steps, ${report.boots} boots, ` +
        `${report.refusals.length} refused`,
    );
  }
  assert.ok(SEEDS.length * STEPS >= 200 || Deno.env.get("LIFEBOAT_HISTORY_STEPS"), "≥ 200 steps");
  assert.ok(refusals < boots, "not every boot refused");
});
