/**
 * P1–P3: backup and restore wall time and peak RSS, lifeboat side by side with the cron recipe
 * (`sqlite3 .backup` + `aws s3 cp`), `aws s3 cp` down, and the raw limits (`cp`, a bare SDK
 * PutObject/GetObject), all against one fresh moto_server per run. With BENCH_LIFEBOAT_ALT set,
 * a second lifeboat checkout runs in the same runs ("lifeboatAlt"), to judge a change fairly on
 * a noisy machine.
 */
import {
  assertOk,
  awsCliEnv,
  BUCKET,
  deleteObject,
  freshS3,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  removeDb,
  rotate,
  s3Client,
  scriptCmd,
  scriptEnv,
  type Timed,
  timed,
  workDir,
} from "./lib.ts";

/** One measurement: wall ms, peak RSS KiB, and the tool's own figure where it reports one. */
export interface Sample {
  ms: number;
  rssKiB: number;
  /** lifeboat: the ms its log reports (without process start); sdk: the transfer alone; cron:
   * the `aws s3 cp` step alone. */
  innerMs?: number;
}

/** Who is measured on the backup side. */
export type BackupTool = "lifeboat" | "lifeboatAlt" | "cron" | "sdkPut" | "cp";
/** Who is measured on the restore side. */
export type RestoreTool = "lifeboat" | "lifeboatAlt" | "awsCp" | "awsCpSingle" | "sdkGet";

/** All runs at one size; index i of every array is run i (same server, same minute). */
export interface TransferResult {
  sizeMiB: number;
  bytes: number;
  backup: Record<BackupTool, Sample[]>;
  restore: Record<RestoreTool, Sample[]>;
}

const sample = (t: Timed, innerMs?: number): Sample => ({ ms: t.ms, rssKiB: t.rssKiB, innerMs });

/** Every contender, in the order of the first run. */
export const ALL_TOOLS: (BackupTool | RestoreTool)[] = [
  "lifeboat",
  "lifeboatAlt",
  "cron",
  "sdkPut",
  "cp",
  "awsCp",
  "awsCpSingle",
  "sdkGet",
];

/**
 * Measures the contenders in `tools` `runs` times on the database `db`; lifeboat's backup
 * always runs, as the object every other restore reads. "lifeboatAlt" runs only when
 * BENCH_LIFEBOAT_ALT names another checkout.
 */
export async function benchTransfers(
  db: string,
  sizeMiB: number,
  runs: number,
  progress: (msg: string) => void,
  tools: (BackupTool | RestoreTool)[] = ALL_TOOLS,
): Promise<TransferResult> {
  const alt = Deno.env.get("BENCH_LIFEBOAT_ALT");
  const wanted = (t: BackupTool | RestoreTool) =>
    tools.includes(t) && (t !== "lifeboatAlt" || alt !== undefined);
  const timeoutMs = 60_000 + sizeMiB * 300;
  const result: TransferResult = {
    sizeMiB,
    bytes: (await Deno.stat(db)).size,
    backup: { lifeboat: [], lifeboatAlt: [], cron: [], sdkPut: [], cp: [] },
    restore: { lifeboat: [], lifeboatAlt: [], awsCp: [], awsCpSingle: [], sdkGet: [] },
  };
  const dir = await workDir(`transfer-${sizeMiB}`);
  const cli = awsCliEnv();

  for (let run = 0; run < runs; run++) {
    const s3 = await freshS3();
    const client = s3Client(s3.endpoint);
    const awsArgs = ["--endpoint-url", s3.endpoint, "--no-progress", "--only-show-errors"];
    const keys: Record<string, string> = {};
    /** `lifeboat VERB` (or the alternative checkout's) of `file` at `prefix`; must exit 0. */
    const lifeboatRun = async (
      cmd: string[],
      verb: "backup" | "restore",
      file: string,
      prefix: string,
    ) => {
      const t = await timed([...cmd, verb], {
        env: lifeboatEnv(s3.endpoint, {
          LIFEBOAT_DB: `${file}=bench`,
          LIFEBOAT_URL: `s3://${BUCKET}/${prefix}`,
        }),
        timeoutMs,
      });
      assertOk(`lifeboat ${verb} (${prefix})`, t);
      return { t, done: logEvents(t.stderr).find((e) => e.event === `${verb}_finished`) };
    };
    /** `lifeboat backup` (or the alternative checkout's) to `prefix`; remembers the key. */
    const lifeboatBackup = async (cmd: string[], prefix: string) => {
      const { t, done } = await lifeboatRun(cmd, "backup", db, prefix);
      keys[prefix] = `${prefix}/${done?.key}`;
      return sample(t, Number(done?.ms));
    };
    /** `lifeboat restore` from `prefix` into a new file, removed afterwards. */
    const lifeboatRestore = async (cmd: string[], prefix: string) => {
      const out = `${dir}/restored.sqlite3`;
      const { t, done } = await lifeboatRun(cmd, "restore", out, prefix);
      if (!done) throw new Error(`lifeboat restore did not restore:\n${t.stderr}`);
      await removeDb(out);
      return sample(t, Number(done.ms));
    };
    /** A command that writes `out`, timed, with `out` removed afterwards. */
    const writesFile = async (what: string, cmd: string[], out: string, env = cli) => {
      const t = await timed(cmd, { env, timeoutMs });
      assertOk(what, t);
      await removeDb(out);
      return t;
    };
    try {
      const backups: Record<BackupTool, () => Promise<Sample>> = {
        lifeboat: () => lifeboatBackup(lifeboatCmd(), "lb"),
        lifeboatAlt: () => lifeboatBackup(lifeboatCmd(alt), "alt"),
        cron: async () => {
          const tmp = `${dir}/cron-tmp.sqlite3`;
          const dump = await timed(["sqlite3", db, `.backup ${tmp}`], { env: cli, timeoutMs });
          assertOk("sqlite3 .backup", dump);
          const target = `s3://${BUCKET}/cron/db.sqlite3`;
          const up = await timed(["aws", "s3", "cp", tmp, target, ...awsArgs], {
            env: cli,
            timeoutMs,
          });
          assertOk("aws s3 cp (up)", up);
          const t0 = performance.now();
          await removeDb(tmp);
          const rm = performance.now() - t0;
          await deleteObject(client, "cron/db.sqlite3");
          return {
            ms: dump.ms + up.ms + rm,
            rssKiB: Math.max(dump.rssKiB, up.rssKiB),
            innerMs: up.ms,
          };
        },
        sdkPut: async () => {
          const t = await timed([...scriptCmd("sdk.ts"), "put", BUCKET, "raw/put.sqlite3", db], {
            env: scriptEnv(s3.endpoint),
            timeoutMs,
          });
          assertOk("sdk put", t);
          await deleteObject(client, "raw/put.sqlite3");
          return sample(t, JSON.parse(t.stdout).ms);
        },
        cp: async () => {
          const out = `${dir}/cp.sqlite3`;
          return sample(await writesFile("cp", ["cp", "--reflink=never", db, out], out));
        },
      };
      const backupTools = (Object.keys(backups) as BackupTool[])
        .filter((t) => t === "lifeboat" || wanted(t));
      for (const tool of rotate(backupTools, run)) {
        const s = await backups[tool]();
        result.backup[tool].push(s);
        progress(`${sizeMiB} MiB run ${run + 1}: backup ${tool} ${Math.round(s.ms)} ms`);
      }

      const restores: Record<RestoreTool, () => Promise<Sample>> = {
        lifeboat: () => lifeboatRestore(lifeboatCmd(), "lb"),
        lifeboatAlt: () => lifeboatRestore(lifeboatCmd(alt), "alt"),
        awsCp: async () => {
          const out = `${dir}/aws.sqlite3`;
          const src = `s3://${BUCKET}/${keys.lb}`;
          return sample(
            await writesFile("aws s3 cp (down)", ["aws", "s3", "cp", src, out, ...awsArgs], out),
          );
        },
        awsCpSingle: async () => {
          const out = `${dir}/aws1.sqlite3`;
          const src = `s3://${BUCKET}/${keys.lb}`;
          const cmd = ["aws", "s3", "cp", src, out, ...awsArgs];
          return sample(await writesFile("aws s3 cp (one GET)", cmd, out, awsCliEnv(true)));
        },
        sdkGet: async () => {
          const out = `${dir}/sdk.sqlite3`;
          const cmd = [...scriptCmd("sdk.ts"), "get", BUCKET, keys.lb, out];
          const t = await writesFile("sdk get", cmd, out, scriptEnv(s3.endpoint));
          return sample(t, JSON.parse(t.stdout).ms);
        },
      };
      const restoreTools = (Object.keys(restores) as RestoreTool[]).filter(wanted);
      for (const tool of rotate(restoreTools, run)) {
        const s = await restores[tool]();
        result.restore[tool].push(s);
        progress(`${sizeMiB} MiB run ${run + 1}: restore ${tool} ${Math.round(s.ms)} ms`);
      }
    } finally {
      client.destroy();
      await s3.stop();
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  return result;
}
