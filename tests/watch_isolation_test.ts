/**
 * `watch`'s job processes (issue #22): the restore at start and each round of backups run in a
 * short-lived child process of lifeboat. A job process killed mid-backup is a failed backup,
 * logged and retried at the next interval, never a hang; one killed mid-restore fails the restore
 * (exit 1, the app not started, no file left); a job process whose watch died stops by itself
 * (EOF on its stdin).
 */
import assert from "node:assert/strict";
import { baseEnv, spawnLifeboat, tempsLeft } from "../testkit/cli.ts";
import { backedUp, proxiedTest, removeTempDir, scene, tempDir } from "../testkit/scene.ts";
import { is } from "../testkit/s3_proxy.ts";
import { addRow, makeDb } from "../testkit/sqlite.ts";

/** The pids of `pid`'s children that are lifeboat job processes. */
function jobPids(pid: number): number[] {
  let children: number[] = [];
  try {
    children = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/)
      .filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return children.filter((c) => {
    try {
      return Deno.readTextFileSync(`/proc/${c}/cmdline`).split("\0").includes("--lifeboat-job");
    } catch {
      return false;
    }
  });
}

/** Polls every 5 ms until `pid` has a job process; returns its pid (fails after `ms`). */
async function nextJob(pid: number, ms = 20_000): Promise<number> {
  for (const deadline = Date.now() + ms; Date.now() < deadline;) {
    const [job] = jobPids(pid);
    if (job) return job;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("no job process started");
}

/** True while process `pid` exists (and is no zombie). */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(Deno.readTextFileSync(`/proc/${pid}/status`));
  } catch {
    return false;
  }
}

/** A database and a directory store, and the environment of a watch on them. */
async function setup() {
  const dir = await tempDir();
  const db = `${dir}/app.db`;
  makeDb(db, 50);
  await Deno.mkdir(`${dir}/store`);
  const env = baseEnv({ LIFEBOAT_DB: db, LIFEBOAT_URL: `file://${dir}/store` });
  return { dir, db, env };
}

Deno.test("watch: a job process killed mid-backup is a failed backup, retried at the next interval", async () => {
  const { dir, db, env } = await setup();
  try {
    const watch = spawnLifeboat(["watch", "--interval", "1s"], env);
    await watch.waitForLine(/watching /);
    addRow(db, "changed");
    const job = await nextJob(watch.proc.pid);
    Deno.kill(job, "SIGKILL");
    const failed = await watch.waitForLine(/backup failed: /);
    assert.match(
      failed,
      new RegExp(
        `backup failed: lifeboat's backup process \\(pid ${job}\\) was killed by SIGKILL ` +
          `before it finished; will retry at the next interval$`,
      ),
    );
    await watch.waitForLine(/backup finished: /, 30_000);
    const end = await watch.stop();
    assert.equal(end.code, 0, end.stderr);
  } finally {
    await removeTempDir(dir);
  }
});

Deno.test("watch: a job process stops by itself when its watch is killed", async () => {
  const { dir, env } = await setup();
  try {
    const watch = spawnLifeboat(["watch", "--interval", "1s"], env);
    await watch.waitForLine(/watching /);
    const job = await nextJob(watch.proc.pid);
    watch.proc.kill("SIGKILL");
    await watch.done();
    for (const deadline = Date.now() + 15_000; alive(job) && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(!alive(job), `job process ${job} still runs without its watch`);
  } finally {
    await removeTempDir(dir);
  }
});

proxiedTest(
  "watch: a job process killed mid-restore fails the restore; no app, no file left",
  async (_t, { s3, proxy }) => {
    const sc = await backedUp(await scene({ s3, proxy, name: "isolation" }), 2000);
    const dir = `${sc.dir}/r`;
    await Deno.mkdir(dir);
    // The download hangs after its first bytes: the job process is mid-restore when it is killed.
    proxy.faults.push({ match: is.get, action: { kind: "hang", afterBytes: 1024 } });
    const watch = spawnLifeboat(
      ["watch", "--db", `${dir}/app.db`, "--", "sh", "-c", `touch ${dir}/app-started`],
      sc.env,
    );
    await proxy.waitFor(["GetObject"], 30_000);
    const job = await nextJob(watch.proc.pid);
    Deno.kill(job, "SIGKILL");
    const end = await watch.done();
    assert.equal(end.code, 1, end.stderr);
    assert.match(
      end.stderr,
      new RegExp(
        `lifeboat's restore process \\(pid ${job}\\) was killed by SIGKILL before it finished`,
      ),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), [], "nothing left, no app run");
    assert.deepEqual(tempsLeft(dir), []);
  },
);
