/**
 * lifeboat inside a real container, tried as a hostile user would (issue #11): fly.io release
 * machines, the app's stop budget, signals and PID 1, odd database files, `restore --force` under
 * a writer, resource limits, unbounded durations, secrets echoed by the server, and unclear
 * one-liners. Tests that need root (mounts, PID namespaces) say so and are skipped without it.
 */
import assert from "node:assert/strict";
import { statfsSync } from "node:fs";
import { MAX_TIMER_MS, systemClock } from "../src/clock.ts";
import { loadConfig } from "../src/config.ts";
import { isRetryable, oneLine } from "../src/errors.ts";
import { redactLine } from "../src/redact.ts";
import { signalExitCode } from "../src/signals.ts";
import { mapS3Error } from "../src/store/s3_errors.ts";
import { startChild } from "../src/supervisor.ts";
import { s3Error, serve } from "../testkit/aws_fakes.ts";
import {
  assertOneLineError,
  backupOk,
  baseEnv,
  restoreOk,
  ROOT,
  runLifeboat,
  spawnLifeboat,
  startUntil,
  tempsLeft,
} from "../testkit/cli.ts";
import { spawnWithMetrics } from "../testkit/ports.ts";
import { addRow, growDb, integrity, makeDb, readRows } from "../testkit/sqlite.ts";
import { LOOSE, scene as kitScene, tempDir } from "../testkit/scene.ts";

const isRoot = Deno.uid() === 0;

/** The stand-in app (tests/fixtures/app.ts) in `mode`, as a `watch -- CMD`. */
const app = (mode: string, db = "") =>
  [Deno.execPath(), "run", "-q", "-A", `${ROOT}/tests/fixtures/app.ts`, mode, db].filter(Boolean);

/**
 * A scratch directory with a directory store holding one backup of a 20-row database (`rows`),
 * stored under the name of the app's database (`app`), and `db`, the app's database path
 * (`app.db`): a new database of `appRows` rows there, if given.
 */
async function scene(appRows?: number) {
  const { dir, env, db } = await kitScene();
  makeDb(`${dir}/first.db`, 20);
  await backupOk(`${dir}/first.db=app`, env);
  if (appRows !== undefined) makeDb(db, appRows);
  return { dir, env, db, rows: readRows(`${dir}/first.db`) };
}

/** What `scene` gives a test. */
type Scene = Awaited<ReturnType<typeof scene>>;

/**
 * Registers test `name` (LOOSE), run on a fresh `scene(appRows)`; with `root`, skipped unless
 * this process is root.
 */
function sceneTest(
  t: string | { name: string; appRows?: number; root?: boolean },
  fn: (s: Scene) => Promise<void>,
): void {
  const o = typeof t === "string" ? { name: t } : t;
  Deno.test({
    name: o.name,
    ignore: o.root && !isRoot,
    ...LOOSE,
    fn: async () => await fn(await scene(o.appRows)),
  });
}

/** Backups in a directory store (in every tier and database under its backups/ directory). */
function backupsIn(store: string): string[] {
  const walk = (d: string): string[] =>
    [...Deno.readDirSync(d)].flatMap((e) =>
      e.isDirectory ? walk(`${d}/${e.name}`) : e.name.endsWith(".sqlite3") ? [e.name] : []
    );
  return walk(`${store}/backups`);
}

/** Starts the stand-in app alone (not under lifeboat) and waits until it is ready. */
async function startApp(mode: string, db: string): Promise<Deno.ChildProcess> {
  const { proc, reader } = await startUntil(app(mode, db), "ready");
  reader.cancel().catch(() => {});
  return proc;
}

async function stop(proc: Deno.ChildProcess, sig: Deno.Signal = "SIGKILL"): Promise<void> {
  try {
    proc.kill(sig);
  } catch { /* gone */ }
  await proc.status;
}

/** Polls until `cond` holds; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// 1. fly.io release machines
sceneTest(
  "#11.1 release machine (RELEASE_COMMAND): watch runs the app without restore or upload; backup refuses",
  async ({ dir, env }) => {
    const release = { ...env, RELEASE_COMMAND: "1" };
    const db = `${dir}/app.db`;
    const probe = ["sh", "-c", 'test ! -e "$0" && echo no-database-here', db];
    const w = spawnLifeboat(["watch", "--db", db, "--", ...probe], release);
    const r = await w.done();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /no-database-here/, "the app ran without a restore before it");
    assert.ok(r.lines.some((l) => /RELEASE_COMMAND is set.*without restore or backup/.test(l)));
    assert.deepEqual(tempsLeft(dir), []);
    assert.equal(backupsIn(`${dir}/store`).length, 1, "nothing uploaded");

    makeDb(db, 5);
    assertOneLineError(
      await runLifeboat(["backup", "--db", db], release),
      2,
      /RELEASE_COMMAND is set: this is a fly\.io release machine.*run migrations in the app's start command/,
    );
    assert.equal(backupsIn(`${dir}/store`).length, 1, "nothing uploaded");
  },
);

// 2. a bound on waiting for the app
sceneTest({
  name:
    "#11.2 an app that ignores SIGTERM gets SIGKILL after LIFEBOAT_APP_STOP_TIMEOUT, then the final backup runs",
  appRows: 5,
}, async ({ dir, env, db }) => {
  const w = spawnLifeboat(
    ["watch", "--db", db, "--interval", "1h", "--", ...app("stubborn")],
    { ...env, LIFEBOAT_APP_STOP_TIMEOUT: "1s" },
  );
  await w.waitForLine(/^ready$/);
  addRow(db, "written-before-the-stop");
  w.proc.kill("SIGTERM");
  await w.waitForLine(/ignoring SIGTERM/);
  const r = await w.done();
  assert.equal(r.code, 128 + 9, r.stderr);
  const killed = r.lines.findIndex((l) => /did not exit within 1\.0s.*SIGKILL/.test(l));
  const finished = r.lines.findIndex((l) => /backup finished/.test(l));
  assert.ok(killed >= 0 && finished > killed, r.stderr);
  const restored = `${dir}/restored.db`;
  assert.equal((await runLifeboat(["restore", "--db", `${restored}=app`], env)).code, 0);
  assert.ok(readRows(restored).includes("written-before-the-stop"));
});

Deno.test("#11.2 config: LIFEBOAT_APP_STOP_TIMEOUT defaults to 10s; with the final backup it fits fly.toml", () => {
  const env = { LIFEBOAT_DB: "/tmp/x.db", LIFEBOAT_URL: "/tmp/store" };
  const cfg = loadConfig({}, env);
  assert.equal(cfg.appStopTimeoutMs, 10_000);
  assert.equal(
    loadConfig({}, { ...env, LIFEBOAT_APP_STOP_TIMEOUT: "2m" }).appStopTimeoutMs,
    120_000,
  );
  assert.equal(cfg.releaseCommand, false);
  assert.equal(loadConfig({}, { ...env, RELEASE_COMMAND: "1" }).releaseCommand, true);
});

// 3. signals
sceneTest({
  name: "#11.3 watch forwards HUP, QUIT, USR1, USR2, WINCH and ALRM to the app and keeps running",
  appRows: 5,
}, async ({ env, db }) => {
  const w = spawnLifeboat(["watch", "--db", db, "--interval", "1h", "--", ...app("echo")], env);
  await w.waitForLine(/^ready$/);
  for (const sig of ["SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGALRM"] as const) {
    w.proc.kill(sig);
    await w.waitForLine(new RegExp(`^got ${sig}$`), 10_000);
  }
  const r = await w.stop();
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.lines.some((l) => /backup finished/.test(l)), "the final backup ran");

  // Without an app, such a signal is logged and ignored: lifeboat keeps protecting the data.
  const alone = spawnLifeboat(["watch", "--db", db, "--interval", "1h"], env);
  await alone.waitForLine(/watching/);
  alone.proc.kill("SIGHUP");
  await alone.waitForLine(/received SIGHUP; no app to pass it to, ignored/);
  assert.equal((await alone.stop()).code, 0);
});

sceneTest(
  "#11.3 an app killed by SEGV, ABRT, BUS, PIPE or ALRM exits 128+N, through watch too",
  async ({ dir, env }) => {
    const expected = { SEGV: 139, ABRT: 134, BUS: 135, PIPE: 141, ALRM: 142, HUP: 129, USR2: 140 };
    for (const [sig, code] of Object.entries(expected)) {
      assert.equal(signalExitCode(`SIG${sig}`), code, sig);
      const child = startChild(["sh", "-c", `kill -${sig} $$; sleep 5`]);
      assert.equal(await child.exitCode, code, sig);
    }
    const r = await runLifeboat(
      ["watch", "--db", `${dir}/app.db`, "--", "sh", "-c", "kill -SEGV $$"],
      env,
    );
    assert.equal(r.code, 139, r.stderr);
  },
);

Deno.test({
  name:
    "#11.3 as PID 1 (root: unshare --pid), SIGTERM during the restore stops cleanly without starting the app",
  ignore: !isRoot,
  ...LOOSE,
  fn: async () => {
    const { dir, env } = await kitScene();
    makeDb(`${dir}/big.db`, 10);
    growDb(`${dir}/big.db`, 48);
    assert.equal((await runLifeboat(["backup", "--db", `${dir}/big.db`], env)).code, 0);
    const db = `${dir}/app.db`;
    const w = spawnLifeboat(
      ["watch", "--db", `${db}=big`, "--", ...app("echo")],
      env,
      ["unshare", "--pid", "--fork", "--mount-proc"],
    );
    // The namespace's PID 1 is unshare's child; SIGTERM it once the download has begun.
    let pid1 = 0;
    await until(() => {
      const kids = Deno.readTextFileSync(`/proc/${w.proc.pid}/task/${w.proc.pid}/children`);
      pid1 = Number(kids.trim().split(/\s+/)[0] || 0);
      return pid1 > 0 && tempsLeft(dir).length > 0;
    }, "the restore to start");
    Deno.kill(pid1, "SIGTERM");
    const r = await w.done();
    assert.equal(r.code, 0, r.stderr);
    assert.ok(
      r.lines.some((l) => /SIGTERM arrived during the restore: not starting the app/.test(l)),
    );
    assert.doesNotMatch(r.stdout, /ready/, "the app was not started");
    assert.equal(integrity(db), "ok", "the restore itself completed");
  },
});

// 4. odd database files
sceneTest(
  "#11.4 a zero-byte database counts as absent: restore fetches the backup over it",
  async ({ env, db, rows }) => {
    Deno.writeFileSync(db, new Uint8Array());
    const r = await restoreOk(db, env);
    assert.match(r.stderr, /restored \S+ from/);
    assert.deepEqual(readRows(db), rows);
  },
);

sceneTest(
  "#11.4 a directory or a non-SQLite file at the database path: restore exits 2, touching nothing",
  async ({ dir, env }) => {
    Deno.mkdirSync(`${dir}/adir`);
    assertOneLineError(
      await runLifeboat(["restore", "--db", `${dir}/adir`], env),
      2,
      /adir is not a file/,
    );
    Deno.writeTextFileSync(`${dir}/notes.txt`, "not a database, but precious\n");
    for (const args of [[], ["--force"]]) {
      assertOneLineError(
        await runLifeboat(["restore", ...args, "--db", `${dir}/notes.txt`], env),
        2,
        /notes\.txt is not a SQLite database.*Point --db/,
      );
    }
    assert.equal(Deno.readTextFileSync(`${dir}/notes.txt`), "not a database, but precious\n");
  },
);

sceneTest(
  "#11.4 a hot rollback journal (the app died mid-transaction): the backup holds the committed rows",
  async ({ dir, env, db }) => {
    makeDb(db, 200, false);
    const committed = readRows(db);
    await stop(await startApp("dirty", db));
    assert.ok(Deno.statSync(`${db}-journal`).size > 0, "a hot journal was left behind");
    const r = await runLifeboat(["backup", "--db", db], env);
    assert.equal(r.code, 0, r.stderr);
    const restored = `${dir}/restored.db`;
    await restoreOk(`${restored}=app`, env);
    assert.equal(integrity(restored), "ok");
    assert.deepEqual(readRows(restored), committed);
  },
);

sceneTest(
  "#11.4 symlinks: restore --force replaces the link's target; the lock is on the real file",
  async ({ dir, env, rows }) => {
    Deno.mkdirSync(`${dir}/real`);
    const real = `${dir}/real/app.db`;
    makeDb(real, 3);
    Deno.symlinkSync("real/app.db", `${dir}/link.db`);
    const r = await runLifeboat(["restore", "--force", "--db", `${dir}/link.db=app`], env);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(Deno.lstatSync(`${dir}/link.db`).isSymlink, "the link is still a link");
    assert.deepEqual(readRows(real), rows, "its target was restored");

    const w = spawnLifeboat(["watch", "--db", real, "--interval", "1h"], env);
    await w.waitForLine(/watching/);
    assertOneLineError(
      await runLifeboat(["backup", "--db", `${dir}/link.db`], env),
      1,
      new RegExp(`another lifeboat process \\(pid ${w.proc.pid}\\) is already working on`),
    );
    assert.equal((await w.stop()).code, 0);
  },
);

sceneTest(
  "#11.4 a 230-character database file name fails at once with one clear line",
  async ({ dir, env }) => {
    const db = `${dir}/${"a".repeat(227)}.db`;
    for (const cmd of ["restore", "backup", "watch"]) {
      assertOneLineError(
        await runLifeboat([cmd, "--db", db], env),
        2,
        /database file name "a{40}…" is 230 bytes long.*at most 216 bytes/,
      );
    }
  },
);

// 5. restore --force under a writer
sceneTest(
  { name: "#11.5 restore --force refuses while an app has the database open", appRows: 5 },
  async ({ env, db }) => {
    const writer = await startApp("writer", db);
    try {
      assertOneLineError(
        await runLifeboat(["restore", "--force", "--db", db], env),
        1,
        /app\.db is open in another process \(an app is using it\).*Stop the app first/,
      );
    } finally {
      await stop(writer);
    }
    assert.ok(readRows(db).some((b) => b.startsWith("writer-")), "the app's commits are kept");
    assert.equal((await runLifeboat(["restore", "--force", "--db", db], env)).code, 0);
  },
);

// 6. resource limits
sceneTest({
  name:
    "#11.6 1,100 idle connections to the metrics port under ulimit -n 1024 never take lifeboat or the app down",
  appRows: 5,
}, async ({ env, db }) => {
  const { w, metricsPort: port } = await spawnWithMetrics(
    ["watch", "--db", db, "--interval", "1h", "--", ...app("echo")],
    env,
    ["bash", "-c", 'ulimit -n 1024; exec "$@"', "bash"],
  );
  await w.waitForLine(/^ready$/);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < 1100; i++) {
    conns.push(await Deno.connect({ hostname: "127.0.0.1", port }));
  }
  await new Promise((r) => setTimeout(r, 1000));
  for (const c of conns) c.close();
  let status = 0;
  for (let i = 0; i < 40 && status !== 200; i++) {
    status = await fetch(`http://127.0.0.1:${port}/metrics`).then(async (res) => {
      await res.body?.cancel();
      return res.status;
    }).catch(() => 0);
    if (status !== 200) await new Promise((r) => setTimeout(r, 500));
  }
  assert.equal(status, 200, "metrics served again after the flood");
  w.proc.kill("SIGUSR1");
  await w.waitForLine(/^got SIGUSR1$/); // the app is alive
  const r = await w.stop();
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Too many open files|Uncaught/);
  assert.equal(r.lines.filter((l) => /connections open: closing new ones/.test(l)).length, 1);
});

sceneTest({
  name:
    "#11.6 an app holding locking_mode=EXCLUSIVE: backup fails with a clear error instead of hanging",
  appRows: 5,
}, async ({ dir, env, db }) => {
  const holder = await startApp("exclusive", db);
  try {
    assertOneLineError(
      await runLifeboat(["backup", "--db", db], env),
      1,
      /could not get a read lock within 10s: another connection keeps the database locked \(PRAGMA locking_mode=EXCLUSIVE/,
    );
  } finally {
    await stop(holder);
  }
  assert.deepEqual(tempsLeft(dir), []);
  assert.equal(backupsIn(`${dir}/store`).length, 1, "nothing uploaded");
});

sceneTest({
  name:
    "#11.6 a snapshot that would fill the disk (root: a 16 MiB tmpfs) is skipped with a 'disk' error; the app keeps committing",
  root: true,
}, async ({ dir, env }) => {
  const small = `${dir}/small`;
  Deno.mkdirSync(small);
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "size=16m", "tmpfs", small],
  }).output();
  assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
  try {
    const db = `${small}/app.db`;
    makeDb(db, 10);
    growDb(db, 5);
    const fs = statfsSync(small);
    const size = Deno.statSync(db).size;
    // Leave room for the copy plus 1 MiB: less than the margin (a tenth of 16 MiB).
    const fill = fs.bavail * fs.bsize - size - 1024 * 1024;
    Deno.writeFileSync(`${small}/filler`, new Uint8Array(fill));
    assertOneLineError(
      await runLifeboat(["backup", "--db", db], env),
      1,
      /not enough disk space for a snapshot of .*app\.db.*Free disk space/,
    );
    assert.deepEqual(tempsLeft(small), []);
    assert.equal(backupsIn(`${dir}/store`).length, 1, "nothing uploaded");
    addRow(db, "the app still commits");
    assert.ok(readRows(db).includes("the app still commits"));
  } finally {
    await new Deno.Command("umount", { args: [small] }).output();
  }
});

// 7. durations
Deno.test("#11.7 durations beyond their bound are config errors; no timer overflows", async () => {
  const env = { LIFEBOAT_DB: "/tmp/x.db", LIFEBOAT_URL: "/tmp/store" };
  const cases: [Record<string, string>, RegExp][] = [
    [{ LIFEBOAT_INTERVAL: "1000h" }, /LIFEBOAT_INTERVAL 1000h is too long.*at most 24h/],
    [{ LIFEBOAT_SHUTDOWN_TIMEOUT: "1000h" }, /LIFEBOAT_SHUTDOWN_TIMEOUT 1000h is too long.*1h/],
    [{ LIFEBOAT_APP_STOP_TIMEOUT: "1000h" }, /LIFEBOAT_APP_STOP_TIMEOUT 1000h is too long.*1h/],
    [{ LIFEBOAT_S3_TIMEOUT: "600h" }, /LIFEBOAT_S3_TIMEOUT 600h is too long.*at most 10m/],
  ];
  for (const [extra, re] of cases) {
    assert.throws(() => loadConfig({}, { ...env, ...extra }), (e: unknown) => {
      assert.match(oneLine(e), re);
      return true;
    });
  }
  // Beyond the timer's range a sleep must wait, not fire at once.
  const stopAt = AbortSignal.timeout(150);
  const started = Date.now();
  await systemClock.sleep(MAX_TIMER_MS * 2, stopAt);
  assert.ok(Date.now() - started >= 140, "the long sleep ended early");
});

sceneTest("#11.7 watch --interval 1000h is one line and exit 2", async ({ dir, env }) => {
  assertOneLineError(
    await runLifeboat(["watch", "--db", `${dir}/app.db`, "--interval", "1000h"], env),
    2,
    /--interval 1000h is too long.*at most 24h/,
  );
});

// 8. secrets echoed by the server
const SESSION = "FwoGZXIvYXdzEX-session_token-planted-by-the-test_0123456789";
const SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY_secret";

Deno.test({
  name: "#11.8 a session token or JWT echoed in an unrecognised S3 error is never printed",
  ...LOOSE,
  fn: async () => {
    const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    const s3 = serve(async (req) => {
      await req.body?.cancel();
      // A HEAD answer has no body to echo into: "no such object", so the first failure that
      // reaches the line is one whose body carries the secrets.
      if (req.method === "HEAD") return new Response(null, { status: 404 });
      return s3Error(400, "WeirdUnknownProblem", `token ${SESSION} and ${SECRET} and ${jwt}`);
    });
    const dir = await tempDir();
    try {
      makeDb(`${dir}/app.db`, 5);
      const r = await runLifeboat(
        ["backup", "--db", `${dir}/app.db`],
        baseEnv({
          LIFEBOAT_URL: "s3://some-bucket/app",
          AWS_ENDPOINT_URL_S3: s3.url,
          AWS_ACCESS_KEY_ID: "AKIDTESTLIFEBOAT",
          AWS_SECRET_ACCESS_KEY: SECRET,
          AWS_SESSION_TOKEN: SESSION,
          LIFEBOAT_S3_MAX_ATTEMPTS: "1",
        }),
      );
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /WeirdUnknownProblem/);
      for (const secret of [SESSION, SECRET, jwt]) {
        assert.ok(!r.stderr.includes(secret) && !r.stdout.includes(secret), `leaked: ${r.stderr}`);
      }
      assert.match(r.stderr, /\[redacted\]/);
    } finally {
      await s3.stop();
    }
  },
});

Deno.test("#11.8 the redactor removes known secrets and JWTs from any line", async () => {
  const { addSecret } = await import("../src/redact.ts");
  addSecret("short"); // too short to be a secret: left alone
  addSecret("s3cr3t-value-long-enough");
  assert.equal(
    redactLine("a s3cr3t-value-long-enough b eyJa.eyJb.c short"),
    "a [redacted] b [redacted token] short",
  );
});

// 9. one-liners that say what failed, where and what to do
Deno.test("#11.9 AbortError, InternalError and SlowDown say what failed, where and what to do", () => {
  const ctx = { op: "PutObject", bucket: "my-bucket", prefix: "app" } as const;
  const err = (name: string, message: string) => Object.assign(new Error(message), { name });
  assert.match(
    oneLine(mapS3Error(err("AbortError", "Request aborted"), ctx)),
    /^S3 PutObject on s3:\/\/my-bucket\/app was aborted: no answer within LIFEBOAT_S3_TIMEOUT \(AbortError: Request aborted\)\. lifeboat retries it; .*raise LIFEBOAT_S3_TIMEOUT/,
  );
  assert.match(
    oneLine(mapS3Error(err("InternalError", "We encountered an internal error."), ctx)),
    /^the S3 server failed on PutObject to s3:\/\/my-bucket\/app \(InternalError: We encountered an internal error\.\)\. It is the server's fault/,
  );
  const slow = oneLine(mapS3Error(err("SlowDown", "Please reduce your request rate."), ctx));
  assert.match(slow, /^S3 asked lifeboat to slow down on PutObject to s3:\/\/my-bucket\/app/);
  assert.doesNotMatch(slow, /\.\./, "no double period");
});

Deno.test("an HTML page where S3 XML was expected (a crashed server, a proxy) is one retryable line", () => {
  const ctx = { op: "PutObject", bucket: "my-bucket", prefix: "app" } as const;
  const html = Object.assign(
    new Error(
      "@aws-sdk XML parse error: mismatched tags <html> and </title>. Deserialization error: " +
        "to see the raw response, inspect the hidden field {error}.$response on this object.",
    ),
    { $response: { statusCode: 500 } },
  );
  const mapped = mapS3Error(html, ctx);
  assert.ok(isRetryable(mapped));
  assert.match(
    oneLine(mapped),
    /^the S3 endpoint answered PutObject on s3:\/\/my-bucket\/app with something that is not an S3 answer \(HTTP 500\), an HTML page perhaps\. lifeboat retries it; .*LIFEBOAT_S3_ENDPOINT/,
  );
});

Deno.test({
  name:
    "#11.9 a database on a read-only file system (root: a read-only tmpfs) is one line naming the fix",
  ignore: !isRoot,
  ...LOOSE,
  fn: async () => {
    const dir = await tempDir();
    const ro = `${dir}/ro`;
    Deno.mkdirSync(ro);
    const mount = await new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", "ro", "tmpfs", ro],
    })
      .output();
    assert.ok(mount.success, new TextDecoder().decode(mount.stderr));
    try {
      assertOneLineError(
        await runLifeboat(["restore", "--db", `${ro}/app.db`], baseEnv({ LIFEBOAT_URL: dir })),
        2,
        /cannot open \S+\/ro\/app\.db for writing to lock it \(Read-only file system \(os error 30\)\)\. .*read-only file system: put LIFEBOAT_DB on a writable volume/,
      );
    } finally {
      await new Deno.Command("umount", { args: [ro] }).output();
    }
  },
});
