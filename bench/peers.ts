/**
 * P1/P9/P10/P11 of issue 14: lifeboat against the best peers, same server, same database, same
 * run, contenders rotated. Backup: lifeboat; `sqlite3 .backup` + `aws s3 cp` (the cron recipe,
 * whose upload step alone is the upload floor); `.backup` + `rclone copyto`. Restore: lifeboat
 * (verified and installed); a bare single GET (`curl --aws-sigv4`); `rclone copyto`. With a WAN
 * shape (BENCH_WAN=MiBps:ms), every contender talks through bench/wan.ts, and a single-stream
 * PUT (`curl -T`) joins as the single-stream upload.
 *
 * The server: moto (default) or radosgw (BENCH_S3=rgw: scripts/start-rgw.sh, started once).
 */
import {
  assertOk,
  awsCliEnv,
  BUCKET,
  DATA,
  fmtMs,
  freshS3,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  onCleanup,
  ratios,
  removeDb,
  ROOT,
  rotate,
  summarize,
  type Timed,
  timed,
  workDir,
} from "./lib.ts";
import { startWanLink, type WanShape } from "./wan.ts";
import { SAFE_AWS_ENV } from "../testkit/moto.ts";

/** One contender's samples: wall ms and peak RSS KiB per run. */
export interface PeerSamples {
  ms: number[];
  rssKiB: number[];
}

/** Every contender at one size on one server. */
export interface PeerResult {
  server: string;
  sizeMiB: number;
  wan?: WanShape;
  backup: Record<string, PeerSamples>;
  restore: Record<string, PeerSamples>;
  /** The cron recipe's `aws s3 cp` step alone: the upload floor. */
  uploadFloor: number[];
}

/** The S3 server the peers run against, with a way to empty it between runs. */
interface PeerServer {
  name: string;
  endpoint: string;
  stop(): Promise<void>;
}

let rgw: Promise<PeerServer> | undefined;

/** Starts radosgw once per bench run (scripts/start-rgw.sh) with the bench's test keys. */
function startRgw(): Promise<PeerServer> {
  rgw ??= (async () => {
    const dir = `${DATA}/rgw`;
    const r = await new Deno.Command("bash", {
      args: [`${ROOT}/scripts/start-rgw.sh`],
      env: {
        D: dir,
        S3_KEY: SAFE_AWS_ENV.AWS_ACCESS_KEY_ID,
        S3_SECRET: SAFE_AWS_ENV.AWS_SECRET_ACCESS_KEY,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(`start-rgw.sh failed:\n${new TextDecoder().decode(r.stderr)}`);
    const env = Object.fromEntries(
      (await Deno.readTextFile(`${dir}/env`)).split("\n").filter((l) => l.includes("="))
        .map((
          l,
        ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).replace(/^"|"$/g, "")]),
    );
    const stop = async () => {
      await new Deno.Command("bash", { args: [`${ROOT}/scripts/stop-rgw.sh`, dir] }).output();
    };
    onCleanup(stop);
    return { name: env.LIFEBOAT_COMPAT_SERVER, endpoint: env.LIFEBOAT_COMPAT_ENDPOINT, stop };
  })();
  return rgw;
}

/** A fresh server for one run: a new moto_server, or radosgw with the bench bucket emptied. */
async function server(): Promise<PeerServer> {
  if (Deno.env.get("BENCH_S3") === "rgw") {
    const s = await startRgw();
    await aws(s.endpoint, ["s3", "rb", `s3://${BUCKET}`, "--force"]).catch(() => {});
    await aws(s.endpoint, ["s3", "mb", `s3://${BUCKET}`]);
    return { ...s, stop: () => Promise.resolve() };
  }
  const m = await freshS3();
  return { name: "moto", endpoint: m.endpoint, stop: m.stop };
}

async function aws(endpoint: string, args: string[]): Promise<void> {
  const r = await new Deno.Command("aws", {
    args: ["--endpoint-url", endpoint, ...args],
    env: awsCliEnv(),
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!r.success) throw new Error(`aws ${args.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
}

/** The WAN shape of BENCH_WAN ("40:15" is 40 MiB/s per connection, 15 ms one way), if set. */
export function wanShape(): WanShape | undefined {
  const raw = Deno.env.get("BENCH_WAN");
  if (!raw) return undefined;
  const [mibPerS, latencyMs] = raw.split(":").map(Number);
  return { mibPerS, latencyMs };
}

/** BENCH_PEERS=restore: the restores only (and the one backup they read), for a quick look. */
function restoreOnly(): boolean {
  return Deno.env.get("BENCH_PEERS") === "restore";
}

/** Environment for rclone: one remote `s3:` at `endpoint`, path-style, the bench's keys. */
function rcloneEnv(endpoint: string): Record<string, string> {
  return {
    ...awsCliEnv(),
    RCLONE_CONFIG_S3_TYPE: "s3",
    RCLONE_CONFIG_S3_PROVIDER: "Other",
    RCLONE_CONFIG_S3_ENDPOINT: endpoint,
    RCLONE_CONFIG_S3_ACCESS_KEY_ID: SAFE_AWS_ENV.AWS_ACCESS_KEY_ID,
    RCLONE_CONFIG_S3_SECRET_ACCESS_KEY: SAFE_AWS_ENV.AWS_SECRET_ACCESS_KEY,
    RCLONE_CONFIG_S3_REGION: SAFE_AWS_ENV.AWS_REGION,
    RCLONE_CONFIG_S3_FORCE_PATH_STYLE: "true",
  };
}

/** curl's SigV4 arguments for one object of the bench bucket (path-style). */
function curlSigned(endpoint: string, key: string): string[] {
  return [
    "-sS",
    "--fail",
    "--aws-sigv4",
    `aws:amz:${SAFE_AWS_ENV.AWS_REGION}:s3`,
    "--user",
    `${SAFE_AWS_ENV.AWS_ACCESS_KEY_ID}:${SAFE_AWS_ENV.AWS_SECRET_ACCESS_KEY}`,
    // radosgw requires the payload hash header; curl signs it along.
    "-H",
    "x-amz-content-sha256: UNSIGNED-PAYLOAD",
    `${endpoint}/${BUCKET}/${key}`,
  ];
}

/** Measures every contender `runs` times on `db` (see the header). */
export async function benchPeers(
  db: string,
  sizeMiB: number,
  runs: number,
  progress: (msg: string) => void,
): Promise<PeerResult> {
  const wan = wanShape();
  const timeoutMs = 120_000 + sizeMiB * 600;
  const dir = await workDir(`peers-${sizeMiB}`);
  const snapshot = `${dir}/snapshot.sqlite3`;
  const out = `${dir}/restored.sqlite3`;
  const backup: Record<string, PeerSamples> = {};
  const restore: Record<string, PeerSamples> = {};
  const uploadFloor: number[] = [];
  let serverName = "";
  const add = (to: Record<string, PeerSamples>, name: string, t: Timed) => {
    (to[name] ??= { ms: [], rssKiB: [] }).ms.push(t.ms);
    to[name].rssKiB.push(t.rssKiB);
  };
  const sum = (...ts: Timed[]): Timed => ({
    ms: ts.reduce((n, t) => n + t.ms, 0),
    rssKiB: Math.max(...ts.map((t) => t.rssKiB)),
    code: 0,
    stdout: "",
    stderr: "",
  });

  for (let run = 0; run < runs; run++) {
    const s = await server();
    serverName = s.name;
    const link = wan ? startWanLink(s.endpoint, wan) : undefined;
    const endpoint = link?.endpoint ?? s.endpoint;
    const cli = awsCliEnv();
    const awsArgs = ["--endpoint-url", endpoint, "--no-progress", "--only-show-errors"];
    let lifeboatKey = "";
    const env = (extra: Record<string, string>) =>
      lifeboatEnv(endpoint, { LIFEBOAT_URL: `s3://${BUCKET}/lb`, ...extra });
    /** `sqlite3 .backup` into the snapshot file, then `upload` of it; the sum is the recipe. */
    const recipe = async (upload: string[], uploadEnv: Record<string, string>) => {
      const dump = await timed(["sqlite3", db, `.backup ${snapshot}`], { env: cli, timeoutMs });
      assertOk("sqlite3 .backup", dump);
      const up = await timed(upload, { env: uploadEnv, timeoutMs });
      assertOk(upload.slice(0, 2).join(" "), up);
      await removeDb(snapshot);
      return { dump, up };
    };
    try {
      const backups: Record<string, () => Promise<void>> = {
        lifeboat: async () => {
          const t = await timed([...lifeboatCmd(), "backup"], {
            env: env({ LIFEBOAT_DB: `${db}=bench` }),
            timeoutMs,
          });
          assertOk("lifeboat backup", t);
          const done = logEvents(t.stderr).find((e) => e.event === "backup_finished");
          lifeboatKey = `lb/${done?.key}`;
          add(backup, "lifeboat", t);
        },
        "sqlite3 .backup + aws s3 cp": async () => {
          const { dump, up } = await recipe(
            ["aws", "s3", "cp", snapshot, `s3://${BUCKET}/cron/db.sqlite3`, ...awsArgs],
            cli,
          );
          add(backup, "sqlite3 .backup + aws s3 cp", sum(dump, up));
          uploadFloor.push(up.ms);
        },
        "sqlite3 .backup + rclone copyto": async () => {
          const { dump, up } = await recipe(
            ["rclone", "copyto", snapshot, `s3:${BUCKET}/rclone/db.sqlite3`],
            rcloneEnv(endpoint),
          );
          add(backup, "sqlite3 .backup + rclone copyto", sum(dump, up));
        },
        ...(wan
          ? {
            "single-stream PUT (curl -T)": async () => {
              await Deno.copyFile(db, snapshot);
              const t = await timed(
                ["curl", "-o", "/dev/null", "-T", snapshot, ...curlSigned(endpoint, "put/db")],
                { env: cli, timeoutMs },
              );
              assertOk("curl -T", t);
              await removeDb(snapshot);
              add(backup, "single-stream PUT (curl -T)", t);
            },
          }
          : {}),
      };
      // lifeboat's backup first in the first run: every restore reads its object.
      // BENCH_PEERS=restore: only lifeboat's backup (every restore reads its object).
      const others = restoreOnly() ? [] : Object.keys(backups).slice(1);
      const order = ["lifeboat", ...rotate(others, run)];
      if (run > 0) order.push(...order.splice(0, 1)); // …and last in the others
      for (const name of order) {
        await backups[name]();
        progress(
          `${sizeMiB} MiB run ${run + 1}: backup ${name} ${Math.round(backup[name].ms.at(-1)!)} ms`,
        );
      }

      const restores: Record<string, () => Promise<Timed>> = {
        lifeboat: () =>
          timed([...lifeboatCmd(), "restore"], {
            env: env({ LIFEBOAT_DB: `${out}=bench` }),
            timeoutMs,
          }),
        "bare GET (curl)": () =>
          timed(["curl", "-o", out, ...curlSigned(endpoint, lifeboatKey)], { env: cli, timeoutMs }),
        "rclone copyto": () =>
          timed(["rclone", "copyto", `s3:${BUCKET}/${lifeboatKey}`, out], {
            env: rcloneEnv(endpoint),
            timeoutMs,
          }),
      };
      for (const name of rotate(Object.keys(restores), run)) {
        const t = await restores[name]();
        assertOk(`restore ${name}`, t);
        await removeDb(out);
        add(restore, name, t);
        progress(`${sizeMiB} MiB run ${run + 1}: restore ${name} ${Math.round(t.ms)} ms`);
      }
    } finally {
      await link?.stop();
      await s.stop();
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  return { server: serverName, sizeMiB, wan, backup, restore, uploadFloor };
}

/** What a no-op restore costs (the database exists): lifeboat against `deno run` of nothing. */
export interface NoopResult {
  lifeboat: PeerSamples;
  /** `deno run` of an empty module with the same flags: the runtime's own floor here. */
  denoFloor: PeerSamples;
}

/** P8: `runs` no-op restores of `db`, each beside a `deno run` of an empty module. */
export async function benchNoopRestore(db: string, runs: number): Promise<NoopResult> {
  const dir = await workDir("noop");
  const empty = `${dir}/empty.ts`;
  await Deno.writeTextFile(empty, "export {};\n");
  const cmd = lifeboatCmd();
  const floorCmd = [...cmd.slice(0, -1), empty]; // same runtime, same flags, no lifeboat
  const res: NoopResult = { lifeboat: { ms: [], rssKiB: [] }, denoFloor: { ms: [], rssKiB: [] } };
  const env = lifeboatEnv("http://127.0.0.1:9", { LIFEBOAT_DB: db, LIFEBOAT_URL: "s3://never/x" });
  for (let run = 0; run < runs; run++) {
    for (const [name, c] of rotate([["lifeboat", [...cmd, "restore"]], ["floor", floorCmd]], run)) {
      const t = await timed(c as string[], { env, timeoutMs: 60_000 });
      assertOk(`no-op ${name}`, t);
      const into = name === "lifeboat" ? res.lifeboat : res.denoFloor;
      into.ms.push(t.ms);
      into.rssKiB.push(t.rssKiB);
    }
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  return res;
}

const med = (xs: number[]) => summarize(xs).median;
const x = (xs: number[]) => {
  const s = summarize(xs);
  return s.n ? `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})` : "–";
};
const mib = (kib: number[]) => `${Math.round(med(kib) / 1024)} MiB`;

/** Renders the peers and the no-op restore as markdown, every ratio per run of the same run. */
export function renderPeers(results: PeerResult[], noop?: NoopResult): string {
  const lines: string[] = [];
  for (const r of results) {
    const shape = r.wan
      ? `, WAN ${r.wan.mibPerS} MiB/s per connection + ${r.wan.latencyMs} ms`
      : "";
    lines.push(`#### ${r.server}, ${r.sizeMiB} MiB${shape}`, "");
    lines.push("| contender | wall (median, min–max) | peak RSS | lifeboat ÷ it, per run |");
    lines.push("|---|---|---|---|");
    for (const [side, all] of [["backup", r.backup], ["restore", r.restore]] as const) {
      const lb = all.lifeboat;
      for (const [name, smp] of Object.entries(all)) {
        const s = summarize(smp.ms);
        lines.push(
          `| ${side}: ${name} | ${fmtMs(s.median)} (${fmtMs(s.min)}–${fmtMs(s.max)}) | ` +
            `${mib(smp.rssKiB)} | ${name === "lifeboat" ? "–" : x(ratios(lb.ms, smp.ms))} |`,
        );
      }
    }
    const f = summarize(r.uploadFloor);
    if (f.n) {
      lines.push(
        `| upload floor: the recipe's \`aws s3 cp\` alone | ${fmtMs(f.median)} (${fmtMs(f.min)}–` +
          `${fmtMs(f.max)}) | – | ${x(ratios(r.backup.lifeboat.ms, r.uploadFloor))} |`,
      );
    }
    lines.push("");
  }
  if (noop) {
    lines.push("#### P8: no-op restore (the database exists)", "");
    lines.push("| contender | wall (median) | peak RSS (median) |", "|---|---|---|");
    lines.push(
      `| lifeboat restore | ${fmtMs(med(noop.lifeboat.ms))} | ${mib(noop.lifeboat.rssKiB)} |`,
    );
    lines.push(
      `| \`deno run\` of an empty module, same flags | ${fmtMs(med(noop.denoFloor.ms))} | ` +
        `${mib(noop.denoFloor.rssKiB)} |`,
      "",
    );
  }
  return lines.join("\n");
}
