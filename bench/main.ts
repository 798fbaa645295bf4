/**
 * `deno task bench`: lifeboat against the cron recipe and the hardware, side by side, in one run.
 *
 * Knobs (environment):
 * - BENCH_SIZES=10,100,1024  database sizes in MiB (generated once into bench/.data/)
 * - BENCH_RUNS=N             runs per figure (default 5 / 3 / 2 for ≤ 10 / ≤ 100 / larger)
 * - BENCH_ONLY=P1,P4,…       a subset of figures (P1: backups only; P2: restores; P3: lifeboat's;
 *                            P12: 4 × 25 MiB databases vs 1 × 100 MiB, bench/multidb.ts;
 *                            PEERS: lifeboat vs the best peers, P1/P9/P10/P11, bench/peers.ts;
 *                            P8: no-op restore; neither runs unless named;
 *                            P13: watch's memory idle and during the largest backup)
 * - BENCH_S3=rgw             PEERS against radosgw (scripts/start-rgw.sh) instead of moto
 * - BENCH_WAN=40:15          PEERS through a shaped link: MiB/s per connection : ms one way
 * - BENCH_PEERS=restore      PEERS: the restores only (lifeboat's backup makes their object)
 * - BENCH_LIST_KEYS=10000    backups in the P5 listing
 * - BENCH_LIFEBOAT_ROOT=DIR  benchmark another checkout of lifeboat instead of this one
 * - BENCH_LIFEBOAT_ALT=DIR   also run another checkout in the same P1–P3 runs ("lifeboatAlt")
 * - BENCH_BASE=REV           run everything chosen on this checkout and on git revision REV,
 *                            and print each figure's ratio this ÷ base (bench/base.ts)
 * - BENCH_BASE_ROUNDS=N      with BENCH_BASE: N runs per side, the order swapped each round
 * - BENCH_OUT=NAME           write bench/.data/NAME.json and NAME.md (default: results)
 * - LIFEBOAT_S3_*            passed on to lifeboat (e.g. LIFEBOAT_S3_PART_SIZE_MB)
 *
 * Writes bench/.data/results.json and bench/.data/results.md, and prints the markdown (with
 * BENCH_BASE: bench/.data/compare.md and compare.json, and prints the comparison).
 */
import { benchAgainstBase } from "./base.ts";
import { ensureDb } from "./dbgen.ts";
import { benchCommitLatency } from "./latency.ts";
import { DATA, runCleanups } from "./lib.ts";
import { machine } from "./machine.ts";
import { benchWatchMemory, type MemoryResult, renderMemory } from "./memory.ts";
import { benchMultiDb, type MultiDbResult, renderMultiDb } from "./multidb.ts";
import { renderMarkdown, type Results } from "./report.ts";
import { benchIdleWrites, benchListNewest } from "./requests.ts";
import { benchNoopRestore, benchPeers, type PeerResult, renderPeers } from "./peers.ts";
import { benchSigterm } from "./shutdown.ts";
import { benchTransfers } from "./transfer.ts";

function runsFor(sizeMiB: number): number {
  const n = Number(Deno.env.get("BENCH_RUNS"));
  if (Number.isInteger(n) && n > 0) return n;
  return sizeMiB <= 10 ? 5 : sizeMiB <= 100 ? 3 : 2;
}

if (import.meta.main) {
  const started = performance.now();
  const log = (msg: string) =>
    console.error(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}`);
  const stop = async (sig: Deno.Signal) => {
    console.error(`bench: ${sig}, stopping everything it started`);
    await runCleanups();
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", () => stop("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stop("SIGTERM"));
  const base = Deno.env.get("BENCH_BASE");
  if (base) {
    let code = 1;
    try {
      code = await benchAgainstBase(base, log);
    } catch (e) {
      console.error(`bench: ${e instanceof Error ? e.message : e}`);
    } finally {
      await runCleanups();
    }
    Deno.exit(code);
  }
  const out = Deno.env.get("BENCH_OUT") || "results";

  const sizes = (Deno.env.get("BENCH_SIZES") ?? "10,100,1024").split(",").map(Number)
    .filter((n) => n > 0).sort((a, b) => a - b);
  const only = new Set(
    (Deno.env.get("BENCH_ONLY") ?? "P1,P2,P3,P4,P5,P6,P7,P12,P13").toUpperCase().split(","),
  );
  const want = (...ids: string[]) => ids.some((id) => only.has(id));
  const results: Results = {
    meta: await machine(),
    transfers: [],
    latency: [],
  };

  let code = 0;
  let multidb: MultiDbResult | undefined;
  let memory: MemoryResult | undefined;
  const peers: PeerResult[] = [];
  let noop: Awaited<ReturnType<typeof benchNoopRestore>> | undefined;
  try {
    const dbs = new Map<number, string>();
    for (const size of sizes) dbs.set(size, await ensureDb(size));
    const largest = sizes.at(-1)!;
    const smallest = sizes[0];

    if (want("P1", "P2", "P3")) {
      const tools: Parameters<typeof benchTransfers>[4] = [];
      if (want("P1")) tools.push("cron", "sdkPut", "cp");
      tools.push("lifeboat", "lifeboatAlt");
      if (want("P2")) tools.push("awsCp", "awsCpSingle", "sdkGet");
      for (const size of sizes) {
        log(`P1–P3 at ${size} MiB, ${runsFor(size)} runs`);
        results.transfers.push(
          await benchTransfers(dbs.get(size)!, size, runsFor(size), log, tools),
        );
      }
    }
    if (want("P4")) {
      for (const size of sizes) {
        const runs = Math.min(3, runsFor(size));
        log(`P4 at ${size} MiB, ${runs} runs`);
        results.latency.push(await benchCommitLatency(dbs.get(size)!, size, runs, 10_000, log));
      }
    }
    if (want("P5")) {
      const keys = Number(Deno.env.get("BENCH_LIST_KEYS") ?? 10_000);
      log(`P5: ${keys} backups`);
      results.list = await benchListNewest(dbs.get(smallest)!, smallest, keys, log);
    }
    if (want("P6")) {
      log(`P6 at ${largest} MiB`);
      results.shutdown = await benchSigterm(dbs.get(largest)!, largest, 1, log);
    }
    if (want("P7")) {
      log(`P7 at ${smallest} MiB`);
      results.idle = await benchIdleWrites(dbs.get(smallest)!, smallest, 5, log);
    }
    if (only.has("PEERS")) {
      for (const size of sizes) {
        log(`PEERS at ${size} MiB, ${runsFor(size)} runs`);
        peers.push(await benchPeers(dbs.get(size)!, size, runsFor(size), log));
      }
    }
    if (only.has("P8")) {
      log("P8: no-op restore, 5 runs");
      noop = await benchNoopRestore(dbs.get(smallest)!, 5);
    }
    if (want("P13")) {
      log(`P13: watch's memory, idle at ${smallest} MiB, busy at ${largest} MiB`);
      const small = { path: dbs.get(smallest)!, sizeMiB: smallest };
      const large = largest > smallest ? { path: dbs.get(largest)!, sizeMiB: largest } : undefined;
      memory = await benchWatchMemory(small, large, log);
    }
    if (want("P12")) {
      log(`P12: 4 × 25 MiB vs 1 × 100 MiB, ${runsFor(100)} runs`);
      const [big, small, tiny] = [await ensureDb(100), await ensureDb(25), await ensureDb(1)];
      multidb = await benchMultiDb(big, small, tiny, runsFor(100), log);
    }
  } catch (e) {
    console.error(`bench: failed: ${e instanceof Error ? e.stack : e}`);
    code = 1;
  } finally {
    await runCleanups();
  }
  results.meta.wallS = (performance.now() - started) / 1000;
  const md = renderMarkdown(results) + (multidb ? "\n" + renderMultiDb(multidb) : "") +
    (memory ? "\n" + renderMemory(memory) : "") +
    (peers.length || noop ? "\n" + renderPeers(peers, noop) : "");
  await Deno.mkdir(DATA, { recursive: true });
  await Deno.writeTextFile(
    `${DATA}/${out}.json`,
    JSON.stringify({ ...results, multidb, peers, noop, memory }, null, 1),
  );
  await Deno.writeTextFile(`${DATA}/${out}.md`, md);
  console.log(md);
  log(`done; wrote ${DATA}/${out}.md and ${out}.json`);
  Deno.exit(code);
}
