/**
 * P12: the cost of several databases. `lifeboat backup` of four 25 MiB databases in one process
 * (LIFEBOAT_BACKUP_CONCURRENCY 1, 2 and 4) against one 100 MiB database, same bytes in all, on a
 * fresh local S3 per run, in an order rotated from run to run. Wall time and peak RSS, and each
 * ratio to the single database taken per run before the median. Then the latency-bound case: four
 * 1 MiB databases through a proxy that holds every request 40 ms (a store 40 ms away), so the
 * requests per database (LIST, PUT, HEAD, tagging, marker) rather than the bytes dominate.
 */
import { startS3Proxy } from "../testkit/s3_proxy.ts";
import {
  assertOk,
  BUCKET,
  copyFile,
  fmtMs,
  freshS3,
  lifeboatCmd,
  lifeboatEnv,
  logEvents,
  ratios,
  rotate,
  summarize,
  type Summary,
  timed,
  workDir,
} from "./lib.ts";

/** The contenders: one 100 MiB database, or four of 25 MiB backed up N at a time. */
export const MULTI_CONTENDERS = [
  "one100",
  "four25c1",
  "four25c2",
  "four25c4",
  "four1c1",
  "four1c2",
  "four1c4",
] as const;
type Contender = typeof MULTI_CONTENDERS[number];

/** One run of one contender. */
export interface MultiSample {
  ms: number;
  rssKiB: number;
}

/** P12's samples per contender, in run order (index i of each is the same run). */
export interface MultiDbResult {
  runs: number;
  samples: Record<Contender, MultiSample[]>;
}

const LABELS: Record<Contender, string> = {
  one100: "1 × 100 MiB",
  four25c1: "4 × 25 MiB, one at a time (`LIFEBOAT_BACKUP_CONCURRENCY=1`)",
  four25c2: "4 × 25 MiB, two at a time (`=2`, the default)",
  four25c4: "4 × 25 MiB, all four at once (`=4`)",
  four1c1: "4 × 1 MiB, 40 ms per request, one at a time",
  four1c2: "4 × 1 MiB, 40 ms per request, two at a time",
  four1c4: "4 × 1 MiB, 40 ms per request, all four at once",
};
/** Added to every request of the latency-bound contenders. */
const LATENCY_MS = 40;

/** Runs P12 `runs` times: `big` (100 MiB), `small` (25 MiB) and `tiny` (1 MiB), four copies each. */
export async function benchMultiDb(
  big: string,
  small: string,
  tiny: string,
  runs: number,
  progress: (msg: string) => void,
): Promise<MultiDbResult> {
  const dir = await workDir("multidb");
  const one = `${dir}/one.sqlite3`;
  const four = ["a", "b", "c", "d"].map((n) => `${dir}/${n}.sqlite3`);
  await copyFile(big, one);
  const fourTiny = ["a", "b", "c", "d"].map((n) => `${dir}/tiny-${n}.sqlite3`);
  for (const f of four) await copyFile(small, f);
  for (const f of fourTiny) await copyFile(tiny, f);
  const samples = Object.fromEntries(MULTI_CONTENDERS.map((c) => [c, []])) as unknown as Record<
    Contender,
    MultiSample[]
  >;
  for (let run = 0; run < runs; run++) {
    const order = rotate([...MULTI_CONTENDERS], run);
    const s3 = await freshS3();
    const slow = startS3Proxy(s3.endpoint);
    slow.faults.push({ match: () => true, action: { kind: "stall", ms: LATENCY_MS } });
    try {
      for (const c of order) {
        const dbs = c === "one100" ? [one] : c.startsWith("four1c") ? fourTiny : four;
        const concurrency = c === "one100" ? "1" : c.slice(-1);
        const endpoint = c.startsWith("four1c") ? slow.endpoint : s3.endpoint;
        const r = await timed([...lifeboatCmd(), "backup", ...dbs.flatMap((d) => ["--db", d])], {
          env: lifeboatEnv(endpoint, {
            LIFEBOAT_URL: `s3://${BUCKET}/multi-${run}-${c}`,
            LIFEBOAT_BACKUP_CONCURRENCY: concurrency,
          }),
          timeoutMs: 600_000,
        });
        assertOk(`lifeboat backup (${c})`, r);
        const uploaded = logEvents(r.stderr).filter((e) => e.event === "backup_finished").length;
        if (uploaded !== dbs.length) {
          throw new Error(`${c}: ${uploaded} backups, not ${dbs.length}`);
        }
        samples[c].push({ ms: r.ms, rssKiB: r.rssKiB });
        progress(`P12 run ${run + 1}: ${c} ${fmtMs(r.ms)}, ${Math.round(r.rssKiB / 1024)} MiB`);
      }
    } finally {
      await slow.stop();
      await s3.stop();
    }
  }
  return { runs, samples };
}

const fmt = (s: Summary, unit: (x: number) => string) =>
  `${unit(s.median)} (${unit(s.min)}–${unit(s.max)})`;
const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
const times = (x: number) => `${x.toFixed(2)}×`;

/** Renders P12 as a markdown section: one row per contender, ratios to the single database. */
export function renderMultiDb(r: MultiDbResult): string {
  // Ratios: to the single 100 MiB database; the latency-bound rows to their one-at-a-time row.
  const baseOf = (c: Contender) => r.samples[c.startsWith("four1c") ? "four1c1" : "one100"];
  const out = [
    "### P12: several databases",
    "",
    `\`lifeboat backup\` of the same 100 MiB as one database or four, and of four small ones ` +
    `behind ${LATENCY_MS} ms per request; ${r.runs} runs, median (min–max); ratios per run to 1 × 100 MiB (the 1 MiB rows: to one at a time).`,
    "",
    "| databases | wall time | ÷ | peak RSS | ÷ |",
    "| --- | ---: | ---: | ---: | ---: |",
  ];
  for (const c of MULTI_CONTENDERS) {
    const xs = r.samples[c], base = baseOf(c);
    const ms = xs.map((x) => x.ms), rss = xs.map((x) => x.rssKiB);
    out.push(
      `| ${LABELS[c]} | ${fmt(summarize(ms), fmtMs)} | ${
        fmt(summarize(ratios(ms, base.map((x) => x.ms))), times)
      } | ${fmt(summarize(rss), mib)} | ${
        fmt(summarize(ratios(rss, base.map((x) => x.rssKiB))), times)
      } |`,
    );
  }
  return out.join("\n") + "\n";
}
