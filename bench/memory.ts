/**
 * P13: what `lifeboat watch` holds in memory (issue #22). Idle: the watch process's resident
 * memory (VmRSS) once its start-up restore and first backup are done and a few idle intervals
 * passed, and its peak (VmHWM). Busy: the peak of the watch process, and separately of its
 * short-lived job processes, while the first backup of a large database uploads. Job processes
 * are sampled every 50 ms from /proc (a child's VmHWM is read while it lives). Alone:
 * `BENCH_SIZES=10,1024 deno run -A bench/memory.ts`; in `deno task bench` as P13.
 */
import {
  assertOk,
  BUCKET,
  childPids,
  freshS3,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  peakRssKiB,
  sleep,
  spawn,
  timed,
  workDir,
} from "./lib.ts";

/** P13's figures, in KiB. */
export interface MemoryResult {
  idleSizeMiB: number;
  /** The watch process's VmRSS after its first backup and `idleIntervals` idle intervals. */
  idleRssKiB: number;
  /** Its VmHWM at that time (the restore and first backup included). */
  idlePeakKiB: number;
  /** Largest VmHWM seen of a job process during the idle run. */
  idleJobPeakKiB: number;
  busySizeMiB?: number;
  /** The watch process's VmHWM after the first backup of the large database. */
  busyPeakKiB?: number;
  /** Largest VmHWM seen of a job process during that backup. */
  busyJobPeakKiB?: number;
}

/** The VmRSS (KiB) of a live process, or NaN once it is gone. */
function rssKiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Samples the VmHWM of `pid`'s children every 50 ms until `stop()`; returns the largest seen. */
function sampleChildren(pid: number): { stop(): Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const c of childPids(pid)) peak = Math.max(peak, peakRssKiB(c) || 0);
      await sleep(50);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/**
 * Runs `watch --interval 1s` on a database restored at start (as on a new fly.io machine), lets
 * `idleIntervals` unchanged backups pass, reads its memory, then stops it with SIGTERM.
 */
async function idleRun(db: string, idleIntervals: number) {
  const dir = await workDir("memory");
  const s3 = await freshS3();
  try {
    const url = `s3://${BUCKET}/memory`;
    const env = (app: string) =>
      lifeboatEnv(s3.endpoint, { LIFEBOAT_DB: `${app}=app`, LIFEBOAT_URL: url });
    assertOk(
      "lifeboat backup",
      await timed([...lifeboatCmd(), "backup"], { env: env(db), timeoutMs: 120_000 }),
    );
    const watch = spawn([...lifeboatCmd(), "watch", "--interval", "1s"], {
      env: env(`${dir}/app.sqlite3`),
      timeoutMs: 120_000,
    });
    const jobs = sampleChildren(watch.pid);
    await watch.waitForLine(/"event":"watch_started"/, 60_000).catch(async (err) => {
      throw new Error(`${err.message}:\n${(await watch.done).stderr.slice(-2000)}`);
    });
    const unchanged = () => watch.lines.filter((l) => /"event":"backup_unchanged"/.test(l.line));
    while (unchanged().length < 1 + idleIntervals) await sleep(100);
    await sleep(300); // between two backups: the job process of the last one has exited
    const r = { idleRssKiB: rssKiB(watch.pid), idlePeakKiB: peakRssKiB(watch.pid) };
    Deno.kill(watch.pid, "SIGTERM");
    assertOk("lifeboat watch", await watch.done);
    return { ...r, idleJobPeakKiB: await jobs.stop() };
  } finally {
    await s3.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `watch` on the large database `db` until its first backup finished; its peaks. */
async function busyRun(db: string) {
  const s3 = await freshS3();
  try {
    const env = lifeboatEnv(s3.endpoint, {
      LIFEBOAT_DB: db,
      LIFEBOAT_URL: `s3://${BUCKET}/busy`,
    });
    const watch = spawn([...lifeboatCmd(), "watch", "--interval", "1s"], {
      env,
      timeoutMs: 600_000,
    });
    const jobs = sampleChildren(watch.pid);
    await watch.waitForLine(/"event":"backup_finished"/, 600_000);
    const busyPeakKiB = peakRssKiB(watch.pid);
    Deno.kill(watch.pid, "SIGTERM");
    const end = await watch.done;
    assertOk("lifeboat watch", end);
    if (!logEvents(end.stderr).some((e) => e.event === "backup_finished")) {
      throw new Error("the large database's backup did not finish");
    }
    return { busyPeakKiB, busyJobPeakKiB: await jobs.stop() };
  } finally {
    await s3.stop();
  }
}

/** P13: the idle run on `small`, and the busy run on `large` when given. */
export async function benchWatchMemory(
  small: { path: string; sizeMiB: number },
  large: { path: string; sizeMiB: number } | undefined,
  progress: (msg: string) => void,
): Promise<MemoryResult> {
  const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
  const idle = await idleRun(small.path, 3);
  progress(
    `idle watch (${small.sizeMiB} MiB): VmRSS ${mib(idle.idleRssKiB)}, peak ${
      mib(idle.idlePeakKiB)
    }, job processes' peak ${mib(idle.idleJobPeakKiB)}`,
  );
  const r: MemoryResult = { idleSizeMiB: small.sizeMiB, ...idle };
  if (!large) return r;
  const busy = await busyRun(large.path);
  progress(
    `watch backing up ${large.sizeMiB} MiB: peak ${mib(busy.busyPeakKiB)}, job process's peak ${
      mib(busy.busyJobPeakKiB)
    }`,
  );
  return { ...r, busySizeMiB: large.sizeMiB, ...busy };
}

/** P13 as a markdown section: the figures against issue #22's targets. */
export function renderMemory(r: MemoryResult): string {
  const mib = (kib: number | undefined) =>
    kib === undefined ? "–" : `${Math.round(kib / 1024)} MiB`;
  const met = (kib: number | undefined, goal: number) =>
    kib === undefined ? "–" : kib <= goal * 1024 ? "**met**" : "**missed**";
  return [
    "### P13: watch's memory (watch process; its job processes apart)",
    "",
    "| state | watch VmRSS | watch VmHWM | job process VmHWM | target | verdict |",
    "| --- | --: | --: | --: | --- | --- |",
    `| idle after restore + first backup (${r.idleSizeMiB} MiB) | ${mib(r.idleRssKiB)} | ${
      mib(r.idlePeakKiB)
    } | ${mib(r.idleJobPeakKiB)} | VmRSS ≤ 48 MiB | ${met(r.idleRssKiB, 48)} |`,
    ...(r.busySizeMiB === undefined ? [] : [
      `| first backup of ${r.busySizeMiB} MiB | – | ${mib(r.busyPeakKiB)} | ${
        mib(r.busyJobPeakKiB)
      } | each VmHWM ≤ 96 MiB | watch ${met(r.busyPeakKiB, 96)}, job ${
        met(r.busyJobPeakKiB, 96)
      } |`,
    ]),
    "",
  ].join("\n");
}

if (import.meta.main) {
  const { ensureDb } = await import("./dbgen.ts");
  const sizes = (Deno.env.get("BENCH_SIZES") ?? "10,1024").split(",").map(Number).sort((a, b) =>
    a - b
  );
  const small = { path: await ensureDb(sizes[0]), sizeMiB: sizes[0] };
  const big = sizes.length > 1 ? sizes[sizes.length - 1] : undefined;
  const large = big ? { path: await ensureDb(big), sizeMiB: big } : undefined;
  const r = await benchWatchMemory(small, large, (m) => console.error(m));
  console.log(renderMemory(r));
}
