/**
 * `watch`'s job processes (issue #22): the restore at start and each round of backups run in a
 * short-lived child process of lifeboat. A job process killed mid-backup is a failed backup,
 * logged and retried at the next interval, never a hang; one killed mid-restore fails the restore
 * (exit 1, the app not started, no file left); a job process whose watch died stops by itself
 * (EOF on its stdin). The watch process itself never evaluates the AWS SDK or node:sqlite.
 */
import assert from "node:assert/strict";
import { baseEnv, ROOT, spawnLifeboat, tempsLeft } from "../testkit/cli.ts";
import {
  backedUp,
  motoTest,
  proxiedTest,
  removeTempDir,
  scene,
  tempDir,
} from "../testkit/scene.ts";
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

/** The modules the probe config replaces by probes (they record the pid that evaluates them). */
const PROBED = [
  "@aws-sdk/client-s3",
  "@aws-sdk/credential-providers",
  "@smithy/fetch-http-handler",
  "node:sqlite",
];

/**
 * Writes, in `dir`, lifeboat's deno.json with an import map that sends each PROBED specifier to a
 * probe module: it appends `PID SPECIFIER` to $PROBE_LOG, then re-exports the real module (a
 * scope maps the probes' own imports to it). Returns the config's path.
 */
function probeConfig(dir: string): string {
  const real = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)).imports;
  const imports: Record<string, string> = { ...real };
  const scoped: Record<string, string> = {};
  Deno.mkdirSync(`${dir}/probe`);
  PROBED.forEach((spec, i) => {
    Deno.writeTextFileSync(
      `${dir}/probe/${i}.ts`,
      `Deno.writeTextFileSync(Deno.env.get("PROBE_LOG")!, \`\${Deno.pid} ${spec}\\n\`, ` +
        `{ append: true });\nexport * from "${spec}";\n`,
    );
    imports[spec] = `./probe/${i}.ts`;
    scoped[spec] = real[spec] ?? spec;
  });
  // A copy of the lock file: the same package versions, resolved offline, and ours untouched.
  Deno.copyFileSync(`${ROOT}/deno.lock`, `${dir}/deno.lock`);
  const config = `${dir}/deno.json`;
  Deno.writeTextFileSync(
    config,
    JSON.stringify({ imports, scopes: { "./probe/": scoped }, lock: "./deno.lock" }),
  );
  return config;
}

motoTest(
  "watch: its own process never loads the AWS SDK or node:sqlite; its job processes do",
  async (_t, s3) => {
    if (Deno.env.get("LIFEBOAT_BIN")) return; // a compiled binary has no import map to probe through
    const sc = await backedUp(await scene({ s3, name: "isolation" }), 50);
    const log = `${sc.dir}/probes.log`;
    Deno.writeTextFileSync(log, "");
    // The same command with the probe config, and -A for its permission flags: only then may
    // lifeboat read /proc/self/cmdline (Deno's rule) and start its job processes with the same
    // --config (self_exec.ts); else they would run unprobed, with the project's own.
    const config = probeConfig(sc.dir);
    const withConfig = [
      "bash",
      "-c",
      'a=(); for x in "$@"; do case $x in --config=*) a+=("--config=$CFG" -A) ;; ' +
      '--allow-*) ;; *) a+=("$x") ;; esac; done; exec "${a[@]}"',
      "bash",
    ];
    const watch = spawnLifeboat(
      ["watch", "--interval", "1s", "--db", `${sc.dir}/r/app.db`],
      { ...sc.env, PROBE_LOG: log, CFG: config, LIFEBOAT_DRILL_INTERVAL: "1m" },
      withConfig,
    );
    // A restore from S3 (installed by watch), an unchanged backup and a restore drill, each in a
    // job process; then the final backup.
    await watch.waitForLine(/restored /);
    await watch.waitForLine(/backup unchanged/);
    await watch.waitForLine(/restore drill: verified/);
    const end = await watch.stop();
    assert.equal(end.code, 0, end.stderr);
    const loads = Deno.readTextFileSync(log).trim().split("\n").map((l) => l.split(" "));
    const inWatch = loads.filter(([pid]) => Number(pid) === watch.proc.pid).map(([, m]) => m);
    assert.deepEqual(inWatch, [], "modules evaluated by the watch process");
    const inJobs = new Set(loads.map(([, m]) => m));
    for (const m of ["@aws-sdk/client-s3", "node:sqlite"]) {
      assert.ok(inJobs.has(m), `the probes work: a job process loaded ${m}: ${[...inJobs]}`);
    }
  },
);
