/** Turns one bench run's results into the markdown tables of BENCHMARKS.md. */
import { fmtMs, MiB, ratios, summarize, type Summary } from "./lib.ts";
import type { LatencyResult } from "./latency.ts";
import type { Meta } from "./machine.ts";
import type { IdleResult, ListResult } from "./requests.ts";
import type { ShutdownResult } from "./shutdown.ts";
import type { Sample, TransferResult } from "./transfer.ts";

/** Everything one `deno task bench` measured. */
export interface Results {
  meta: Meta;
  transfers: TransferResult[];
  latency: LatencyResult[];
  list?: ListResult;
  shutdown?: ShutdownResult;
  idle?: IdleResult;
}

const GOALS = {
  P1: 0.8,
  P2: 1.1,
  P2abs: 30_000,
  P3: 128 * 1024,
  P4: 1.25,
  P5: 1,
  P6: 100,
  P7: 0,
};

const yes = (ok: boolean) => (ok ? "**met**" : "**missed**");

/** "1.23× (1.10–1.40)" for a ratio sample. */
function fmtRatio(s: Summary): string {
  if (!s.n) return "–";
  return `${s.median.toFixed(2)}× (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
}

/** "12.3 s (11.9–13.0 s)" for a time sample. */
function fmtTime(s: Summary): string {
  if (!s.n) return "–";
  return `${fmtMs(s.median)} (${fmtMs(s.min)}–${fmtMs(s.max)})`;
}

/** "105 MiB (104–106)" for an RSS sample in KiB. */
function fmtRss(s: Summary): string {
  if (!s.n) return "–";
  const m = (k: number) => Math.round(k / 1024);
  return `${m(s.median)} MiB (${m(s.min)}–${m(s.max)})`;
}

const wall = (xs: Sample[]) => xs.map((x) => x.ms);
const rss = (xs: Sample[]) => xs.map((x) => x.rssKiB);
const sizeLabel = (mib: number) => (mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`);

/** Renders the goal table, the raw tables and the per-run numbers as markdown. */
export function renderMarkdown(r: Results): string {
  const out: string[] = [];
  const row = (cells: (string | number)[]) => out.push(`| ${cells.join(" | ")} |`);
  const m = r.meta;
  out.push(`Run: ${m.date} · \`${m.command}\` · ${m.cpu}, ${m.nproc} cores, ${m.memGiB} GiB RAM`);
  out.push(
    `· Linux ${m.kernel} · ${Object.entries(m.tools).map(([k, v]) => `${k} ${v}`).join(", ")}`,
  );
  out.push(
    `· lifeboat ${m.lifeboat}` +
      (Object.keys(m.knobs).length
        ? ` · knobs ${Object.entries(m.knobs).map(([k, v]) => `${k}=${v}`).join(" ")}`
        : ""),
  );
  out.push(`· whole run ${Math.round(m.wallS)} s`, "");

  out.push("### Goals", "");
  row(["id", "figure", "size", "lifeboat", "baseline", "lifeboat ÷ baseline", "goal", ""]);
  row(["---", "---", "---", "---:", "---:", "---:", "---", "---"]);
  for (const t of r.transfers.filter((t) => t.backup.cron.length)) {
    const lb = wall(t.backup.lifeboat), cron = wall(t.backup.cron);
    const q = summarize(ratios(lb, cron));
    row([
      "P1",
      "backup wall time vs `sqlite3 .backup` + `aws s3 cp`",
      sizeLabel(t.sizeMiB),
      fmtTime(summarize(lb)),
      fmtTime(summarize(cron)),
      fmtRatio(q),
      "≤ 0.8×",
      yes(q.median <= GOALS.P1),
    ]);
  }
  for (const t of r.transfers.filter((t) => t.restore.awsCp.length)) {
    const lb = wall(t.restore.lifeboat), aws = wall(t.restore.awsCp);
    const q = summarize(ratios(lb, aws));
    const s = summarize(lb);
    row([
      "P2",
      "restore wall time (verified) vs `aws s3 cp` down",
      sizeLabel(t.sizeMiB),
      fmtTime(s),
      fmtTime(summarize(aws)),
      fmtRatio(q),
      "≤ 1.1×; < 30 s",
      yes(q.median <= GOALS.P2 && s.max < GOALS.P2abs),
    ]);
  }
  // P3: "flat" means no growth with the database once the upload buffers are full: the peak at
  // the largest size may exceed the peak at the size before it (10× smaller) by 10% at most.
  const withRss = r.transfers.filter((t) => t.restore.lifeboat.length);
  const peakOf = (t: TransferResult) =>
    Math.max(...rss(t.backup.lifeboat), ...rss(t.restore.lifeboat));
  withRss.forEach((t, i) => {
    const b = summarize(rss(t.backup.lifeboat)), rs = summarize(rss(t.restore.lifeboat));
    const prev = withRss[i - 1];
    const growth = prev ? peakOf(t) / peakOf(prev) : 1;
    row([
      "P3",
      "peak RSS of lifeboat (backup / restore)",
      sizeLabel(t.sizeMiB),
      `${fmtRss(b)} / ${fmtRss(rs)}`,
      prev ? `peak at ${sizeLabel(prev.sizeMiB)}: ${Math.round(peakOf(prev) / 1024)} MiB` : "–",
      prev ? `${growth.toFixed(2)}×` : "–",
      "≤ 128 MiB, flat",
      yes(peakOf(t) <= GOALS.P3 && (i < withRss.length - 1 || growth <= 1.1)),
    ]);
  });
  for (const l of r.latency) {
    const during = l.runs.map((x) => x.lifeboat.p99), idle = l.runs.map((x) => x.idle.p99);
    const q = summarize(ratios(during, idle));
    const f = (xs: number[]) => {
      const s = summarize(xs);
      return `${s.median.toFixed(3)} ms (${s.min.toFixed(3)}–${s.max.toFixed(3)})`;
    };
    row([
      "P4",
      `writer's p99 commit latency during a backup vs none (1 tx / ${l.periodMs} ms)`,
      sizeLabel(l.sizeMiB),
      f(during),
      f(idle),
      fmtRatio(q),
      "≤ 1.25×",
      yes(q.median <= GOALS.P4),
    ]);
  }
  if (r.list) {
    const n = r.list.lifeboat.counts.ListObjectsV2 ?? 0;
    row([
      "P5",
      `LIST requests to find the newest of ${r.list.backups.toLocaleString("en")} backups`,
      sizeLabel(r.list.sizeMiB),
      `${n} (restore ${fmtMs(r.list.lifeboat.ms)})`,
      `\`aws s3 ls\`: ${r.list.awsLs.counts.ListObjectsV2 ?? 0} (${fmtMs(r.list.awsLs.ms)})`,
      "–",
      "1",
      yes(n === GOALS.P5),
    ]);
  }
  if (r.shutdown) {
    for (const phase of ["snapshot", "upload"]) {
      const runs = r.shutdown.runs.filter((x) => x.phase === phase);
      if (!runs.length) continue;
      const log = summarize(runs.map((x) => x.toSignalLogMs));
      const line = summarize(runs.map((x) => x.toSignalLineMs));
      row([
        "P6",
        `SIGTERM → shutdown starts (\`signal\` logged), backup in its ${phase}`,
        sizeLabel(r.shutdown.sizeMiB),
        `${Math.round(log.max)} ms (line read: ${line.max.toFixed(1)} ms)`,
        "–",
        "–",
        "< 100 ms",
        yes(line.max < GOALS.P6),
      ]);
    }
  }
  if (r.idle) {
    const per = r.idle.writes / Math.max(1, r.idle.unchanged + r.idle.uploaded);
    row([
      "P7",
      "write requests per interval, idle database (after restore)",
      sizeLabel(r.idle.sizeMiB),
      `${per} (${r.idle.writes} in ${r.idle.unchanged + r.idle.uploaded} intervals; ` +
      `peak RSS ${Math.round(r.idle.rssKiB / 1024)} MiB)`,
      "–",
      "–",
      "0",
      yes(r.idle.writes === GOALS.P7),
    ]);
  }
  out.push("");

  if (r.transfers.length) {
    out.push("### Transfers: every contender, same server, same run", "");
    out.push(
      "Wall time of the whole command (process start to exit), median (min–max) over the runs; " +
        "throughput from the median; peak RSS from `/usr/bin/time` (max over the runs). " +
        "“own” is the time lifeboat logs for the operation (without process start-up); for the " +
        "SDK script, the transfer alone; for the cron recipe, its `aws s3 cp` step alone.",
      "",
    );
    row(["size", "operation", "tool", "wall", "MiB/s", "own", "peak RSS", "÷ baseline"]);
    row(["---", "---", "---", "---:", "---:", "---:", "---:", "---:"]);
    for (const t of r.transfers) {
      const mib = t.bytes / MiB;
      const line = (op: string, tool: string, xs: Sample[], base: Sample[]) => {
        if (!xs.length) return;
        const s = summarize(wall(xs));
        const own = xs.map((x) => x.innerMs).filter((x): x is number => x !== undefined);
        row([
          sizeLabel(t.sizeMiB),
          op,
          tool,
          fmtTime(s),
          (mib / (s.median / 1000)).toFixed(0),
          own.length ? fmtMs(summarize(own).median) : "–",
          `${Math.round(Math.max(...rss(xs)) / 1024)} MiB`,
          fmtRatio(summarize(ratios(wall(xs), wall(base)))),
        ]);
      };
      line("backup", "**lifeboat backup**", t.backup.lifeboat, t.backup.cron);
      line("backup", "lifeboat, BENCH_LIFEBOAT_ALT", t.backup.lifeboatAlt, t.backup.cron);
      line("backup", "cron recipe (baseline)", t.backup.cron, t.backup.cron);
      line("backup", "raw: SDK PutObject", t.backup.sdkPut, t.backup.cron);
      line("backup", "raw: `cp`", t.backup.cp, t.backup.cron);
      line("restore", "**lifeboat restore**", t.restore.lifeboat, t.restore.awsCp);
      line("restore", "lifeboat, BENCH_LIFEBOAT_ALT", t.restore.lifeboatAlt, t.restore.awsCp);
      line("restore", "`aws s3 cp` down (baseline)", t.restore.awsCp, t.restore.awsCp);
      line("restore", "`aws s3 cp` down, one GET", t.restore.awsCpSingle, t.restore.awsCp);
      line("restore", "raw: SDK GetObject", t.restore.sdkGet, t.restore.awsCp);
    }
    out.push("");
  }

  if (r.latency.length) {
    out.push("### P4 detail: writer commit latency (ms) per run", "");
    row([
      "size",
      "run",
      "idle p50 / p99 / max",
      "lifeboat backup p50 / p99 / max",
      "backups × each",
      "`sqlite3 .backup` under the same writer",
    ]);
    row(["---", "---", "---", "---", "---:", "---"]);
    for (const l of r.latency) {
      l.runs.forEach((x, i) => {
        const f = (w: { p50: number; p99: number; max: number; commits: number }) =>
          `${w.p50.toFixed(3)} / ${w.p99.toFixed(3)} / ${w.max.toFixed(1)} (${w.commits} commits)`;
        row([
          sizeLabel(l.sizeMiB),
          i + 1,
          f(x.idle),
          f(x.lifeboat),
          `${x.lifeboat.backups} × ${fmtMs(x.lifeboat.backupMs)}`,
          x.cron
            ? x.cron.finished
              ? `finished in ${fmtMs(x.cron.backupMs)}; p99 ${x.cron.p99.toFixed(3)} ms`
              : `**did not finish** in ${fmtMs(x.cron.backupMs)} (restarts on every commit); p99 ${
                x.cron.p99.toFixed(3)
              } ms`
            : "–",
        ]);
      });
    }
    out.push("");
  }

  if (r.shutdown) {
    out.push("### P6 detail: SIGTERM during a backup", "");
    row([
      "phase",
      "→ `signal` log time",
      "→ line read",
      "→ `backup_aborted`",
      "→ exit",
      "final backup took",
      "exit code",
      "peak RSS",
    ]);
    row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]);
    for (const x of r.shutdown.runs) {
      row([
        x.phase,
        `${x.toSignalLogMs} ms`,
        `${x.toSignalLineMs.toFixed(1)} ms`,
        fmtMs(x.toAbortedMs),
        fmtMs(x.toExitMs),
        fmtMs(x.finalBackupMs),
        x.exitCode,
        `${Math.round(x.peakRssKiB / 1024)} MiB`,
      ]);
    }
    out.push("");
  }

  if (r.list || r.idle) {
    out.push("### P5 / P7 detail: requests by operation", "");
    const c = (x: Record<string, number>) =>
      Object.entries(x).sort().map(([k, v]) => `${k} ${v}`).join(", ") || "none";
    if (r.list) {
      out.push(
        `- P5 \`lifeboat restore\` among ${r.list.backups + 1} objects: ${
          c(r.list.lifeboat.counts)
        }`,
      );
      out.push(`- P5 \`aws s3 ls\` of the same prefix: ${c(r.list.awsLs.counts)}`);
    }
    if (r.idle) {
      out.push(`- P7 start-up restore: ${c(r.idle.restoreCounts)}`);
      out.push(
        `- P7 after it, ${r.idle.unchanged} unchanged + ${r.idle.uploaded} uploaded backups ` +
          `(1 s interval, final one included): ${c(r.idle.counts)}`,
      );
    }
    out.push("");
  }

  out.push("### Raw numbers (ms per run, in run order)", "");
  const ms = (xs: number[]) => xs.map((x) => Math.round(x)).join(", ");
  for (const t of r.transfers) {
    for (const [op, tools] of [["backup", t.backup], ["restore", t.restore]] as const) {
      for (const [tool, xs] of Object.entries(tools) as [string, Sample[]][]) {
        if (!xs.length) continue;
        out.push(
          `- ${sizeLabel(t.sizeMiB)} ${op} ${tool}: wall ${ms(wall(xs))}; RSS MiB ` +
            xs.map((x) => Math.round(x.rssKiB / 1024)).join(", ") +
            (xs.some((x) => x.innerMs !== undefined)
              ? `; own ${ms(xs.map((x) => x.innerMs ?? NaN))}`
              : ""),
        );
      }
    }
  }
  for (const l of r.latency) {
    out.push(
      `- ${sizeLabel(l.sizeMiB)} P4 p99 idle ${
        l.runs.map((x) => x.idle.p99.toFixed(3)).join(", ")
      }; ` +
        `during lifeboat ${l.runs.map((x) => x.lifeboat.p99.toFixed(3)).join(", ")}`,
    );
  }
  out.push("");
  return out.join("\n");
}
