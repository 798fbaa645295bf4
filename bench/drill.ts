/**
 * DRILL: what a restore drill costs (#21). `lifeboat verify` runs exactly the drill `watch` runs
 * (one database: one LIST, then the newest backup read back as one GetObject stream and verified
 * as restore would), as a whole process against a fresh moto_server through the counting proxy:
 * wall time, peak RSS and requests by operation, with the default check (a backup that records
 * its quick_check: the stream is hashed, nothing is written) and with
 * LIFEBOAT_RESTORE_CHECK=quick_check (a copy beside the database, then quick_check). Beside them,
 * as yardsticks, `lifeboat list` (the same process start and SDK, one LIST: the memory a drill
 * adds is verify's peak minus list's) and `lifeboat restore` of the same backup.
 *
 *   deno run -A bench/drill.ts            (BENCH_SIZES=100,1024 MiB; BENCH_RUNS: 3 / 2 runs)
 *
 * Prints a markdown table (BENCHMARKS.md, "Restore drills") and writes bench/.data/drill.json.
 */
import { ensureDb } from "./dbgen.ts";
import {
  assertOk,
  BUCKET,
  DATA,
  fmtMs,
  lifeboatCmd,
  lifeboatEnv,
  removeDb,
  rotate,
  runCleanups,
  summarize,
  timed,
  withCountingS3,
} from "./lib.ts";
import { machine } from "./machine.ts";

/** What is measured, in the order of the table. */
const CONTENDERS = ["verify", "verifyChecked", "list", "restore"] as const;
type Contender = typeof CONTENDERS[number];

const LABELS: Record<Contender, string> = {
  verify: "`lifeboat verify` (the drill; default check: hashed as it streams)",
  verifyChecked: "`lifeboat verify`, `LIFEBOAT_RESTORE_CHECK=quick_check` (copy + quick_check)",
  list: "`lifeboat list` (yardstick: start, SDK, one LIST)",
  restore: "`lifeboat restore` of the same backup (yardstick)",
};

/** One run of one contender: wall time, peak RSS and the requests it made. */
interface Sample {
  ms: number;
  rssKiB: number;
  counts: Record<string, number>;
}

/** The samples of one database size. */
export interface DrillBench {
  sizeMiB: number;
  runs: number;
  samples: Record<Contender, Sample[]>;
}

/** Measures every contender `runs` times on a backup of `db`, in an order rotated per run. */
export async function benchDrill(db: string, sizeMiB: number, runs: number): Promise<DrillBench> {
  const samples = Object.fromEntries(CONTENDERS.map((c) => [c, []])) as unknown as Record<
    Contender,
    Sample[]
  >;
  await withCountingS3(`drill-${sizeMiB}`, async ({ dir, s3, proxy }) => {
    const url = `s3://${BUCKET}/drill`;
    // Not measured. moto concatenates a 1 GiB multipart upload in CompleteMultipartUpload for
    // longer than the default 30 s on a loaded machine: lifeboat would time out and abort it.
    const made = await timed([...lifeboatCmd(), "backup", "--db", db, "--url", url], {
      env: lifeboatEnv(s3.endpoint, { LIFEBOAT_S3_TIMEOUT: "10m" }),
      timeoutMs: 600_000,
    });
    assertOk("lifeboat backup", made);
    // The drill's own database path: its directory gets the copy the quick_check reads.
    const here = `${dir}/app.sqlite3`;
    for (let run = 0; run < runs; run++) {
      for (const c of rotate([...CONTENDERS], run)) {
        await removeDb(here);
        const cmd = c === "verifyChecked" ? "verify" : c;
        const env = lifeboatEnv(proxy.endpoint, {
          ...(c === "verifyChecked" ? { LIFEBOAT_RESTORE_CHECK: "quick_check" } : {}),
        });
        proxy.reset();
        const r = await timed([...lifeboatCmd(), cmd, "--db", here, "--url", url], {
          env,
          timeoutMs: 600_000,
        });
        assertOk(`lifeboat ${cmd} (${c})`, r);
        if (c.startsWith("verify") && !/: verified /.test(r.stdout)) {
          throw new Error(`${c}: ${r.stdout}`);
        }
        samples[c].push({ ms: r.ms, rssKiB: r.rssKiB, counts: proxy.counts() });
        console.error(
          `[drill ${sizeMiB} MiB run ${run + 1}] ${c}: ${fmtMs(r.ms)}, ` +
            `${Math.round(r.rssKiB / 1024)} MiB, ${JSON.stringify(proxy.counts())}`,
        );
      }
    }
    await removeDb(here);
  });
  return { sizeMiB, runs, samples };
}

const mib = (kib: number) => `${Math.round(kib / 1024)} MiB`;
const range = (xs: number[], f: (x: number) => string) => {
  const s = summarize(xs);
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
};

/** The markdown table: one row per size and contender, median (min–max). */
export function renderDrill(results: DrillBench[]): string {
  const out = [
    "| database | what | wall time | peak RSS | requests per run |",
    "| --- | --- | ---: | ---: | --- |",
  ];
  for (const r of results) {
    for (const c of CONTENDERS) {
      const xs = r.samples[c];
      // Runs that made other requests (restore's ranges depend on its first part's speed).
      const counts = [
        ...new Set(
          xs.map((x) => Object.entries(x.counts).sort().map(([op, n]) => `${op} ${n}`).join(", ")),
        ),
      ].join("; or ");
      out.push(
        `| ${r.sizeMiB} MiB | ${LABELS[c]} | ${range(xs.map((x) => x.ms), fmtMs)} | ${
          range(xs.map((x) => x.rssKiB), mib)
        } | ${counts} |`,
      );
    }
  }
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const sizes = (Deno.env.get("BENCH_SIZES") ?? "100,1024").split(",").map(Number)
    .filter((n) => n > 0);
  const runsOf = (size: number) => Number(Deno.env.get("BENCH_RUNS")) || (size <= 100 ? 3 : 2);
  const results: DrillBench[] = [];
  let code = 0;
  try {
    for (const size of sizes) {
      results.push(await benchDrill(await ensureDb(size), size, runsOf(size)));
    }
  } catch (e) {
    console.error(`bench: failed: ${e instanceof Error ? e.stack : e}`);
    code = 1;
  } finally {
    await runCleanups();
  }
  const meta = await machine();
  await Deno.mkdir(DATA, { recursive: true });
  await Deno.writeTextFile(`${DATA}/drill.json`, JSON.stringify({ meta, results }, null, 1));
  console.log(renderDrill(results));
  Deno.exit(code);
}
