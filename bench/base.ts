/**
 * `BENCH_BASE=REV deno task bench`: the same measurements on this checkout and on REV in one run,
 * and each figure's ratio this ÷ base, so whoever slows a figure down sees it before merging.
 *
 * How: REV is checked out into a temporary git worktree (`deno install` there); then this
 * checkout's bench runs once per side and round (BENCH_BASE_ROUNDS, default 1), as a child
 * process with every other knob as given and BENCH_LIFEBOAT_ROOT pointing at the side's checkout,
 * the sides' order swapped each round. Only lifeboat differs between the sides: the measuring
 * code is this checkout's. Every numeric figure of the children's results.json is paired by its
 * place (runs pooled as samples) and compared by median. Why whole runs rather than interleaving
 * each contender: every figure then comes for free, including ones added later; rounds with the
 * order swapped spread a drifting machine over both sides.
 */
import { DATA, onCleanup, ROOT, summarize } from "./lib.ts";

/** One figure on both sides: its samples, pooled over rounds. */
export interface Compared {
  figure: string;
  this: number[];
  base: number[];
}

/** Fields that describe a run rather than measure it, never compared. */
const NOT_FIGURES = new Set(["meta", "wan", "sizeMiB", "bytes", "periodMs", "intervalMs"]);
/** Fields that tell array elements apart (else the elements are runs: samples pooled). */
const IDENTITY = ["server", "sizeMiB", "phase", "name"];

/**
 * Runs the bench on both sides and prints the comparison; resolves with the exit code (1 when a
 * side failed, its figures then missing). Throws (with git's message) when REV cannot be
 * checked out or its dependencies installed.
 */
export async function benchAgainstBase(rev: string, log: (msg: string) => void): Promise<number> {
  const sha = (await run(`BENCH_BASE=${rev}: git rev-parse`, [
    "git",
    "-C",
    ROOT,
    "rev-parse",
    "--short",
    `${rev}^{commit}`,
  ])).trim();
  const dir = await Deno.makeTempDir({ prefix: "lifeboat-bench-base-" });
  onCleanup(async () => {
    await run("git worktree remove", ["git", "-C", ROOT, "worktree", "remove", "--force", dir])
      .catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  });
  log(`base: ${rev} (${sha}) checked out into ${dir}`);
  await run("git worktree add", ["git", "-C", ROOT, "worktree", "add", "--detach", dir, sha]);
  await run(`deno install in ${dir}`, [Deno.execPath(), "install", "-q"], dir);
  const rounds = Math.max(1, Number(Deno.env.get("BENCH_BASE_ROUNDS")) || 1);
  const sides = { this: ROOT, base: dir };
  const results: Record<keyof typeof sides, unknown[]> = { this: [], base: [] };
  let code = 0;
  for (let round = 0; round < rounds; round++) {
    const order = (["base", "this"] as const).slice();
    if (round % 2 === 1) order.reverse();
    for (const side of order) {
      log(`round ${round + 1}/${rounds}: ${side} (${side === "this" ? "this checkout" : sha})`);
      const out = `results-${side}-${round + 1}`;
      const ok = await benchChild(sides[side], out);
      if (!ok) code = 1;
      try {
        results[side].push(JSON.parse(await Deno.readTextFile(`${DATA}/${out}.json`)));
      } catch { /* that run wrote nothing: its figures are missing */ }
    }
  }
  const rows = compare(results.this, results.base);
  const md = renderComparison(rows, `${rev} (${sha})`, rounds);
  await Deno.writeTextFile(`${DATA}/compare.md`, md);
  await Deno.writeTextFile(`${DATA}/compare.json`, JSON.stringify({ rev, sha, rows }, null, 1));
  console.log(md);
  log(`done; wrote ${DATA}/compare.md and compare.json (each side: ${DATA}/results-SIDE-N.*)`);
  return code;
}

/** One bench run with lifeboat from `root`, writing `${DATA}/${out}.json`; true if it succeeded. */
async function benchChild(root: string, out: string): Promise<boolean> {
  const env = Deno.env.toObject();
  delete env.BENCH_BASE;
  env.BENCH_LIFEBOAT_ROOT = root;
  env.BENCH_OUT = out;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-q", "-A", `--config=${ROOT}/deno.json`, `${ROOT}/bench/main.ts`],
    env,
    clearEnv: true,
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // The child stops what it started on SIGINT/SIGTERM; this process waits for it.
  return (await child.status).success;
}

/** Runs `cmd` (in `cwd`, `what` naming it) and returns its stdout; throws with its stderr's last line when it fails. */
async function run(what: string, cmd: string[], cwd?: string): Promise<string> {
  const o = await new Deno.Command(cmd[0], { args: cmd.slice(1), cwd, stderr: "piped" }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  const why = text(o.stderr).trim().split("\n").at(-1);
  if (!o.success) throw new Error(`${what} failed: ${why}`);
  return text(o.stdout);
}

/**
 * Pairs the figures of this side's and the base's results (each a list of rounds) by place; a
 * figure only one side has gets an empty list on the other. Never throws.
 */
export function compare(thisRuns: unknown[], baseRuns: unknown[]): Compared[] {
  const figures = new Map<string, Compared>();
  const add = (side: "this" | "base") => (figure: string, value: number) => {
    const row = figures.get(figure) ?? { figure, this: [], base: [] };
    figures.set(figure, row);
    row[side].push(value);
  };
  for (const r of thisRuns) collect(r, "", add("this"));
  for (const r of baseRuns) collect(r, "", add("base"));
  return [...figures.values()];
}

/** Calls `add` with every numeric figure under `value`, named by its place. */
function collect(value: unknown, at: string, add: (figure: string, n: number) => void): void {
  if (typeof value === "number") {
    if (Number.isFinite(value)) add(at, value);
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      const id = item && typeof item === "object"
        ? IDENTITY.map((k) => (item as Record<string, unknown>)[k]).filter((v) => v !== undefined)
        : [];
      // Elements with an identity are different figures; the others are runs of one.
      collect(item, id.length ? `${at}[${id.join(" ")}]` : at, add);
    }
    return;
  }
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (!NOT_FIGURES.has(k)) collect(v, at ? `${at}.${k}` : k, add);
    }
  }
}

/** The comparison as markdown: one row per figure, medians and this ÷ base ("–" where a side has none). Never throws. */
export function renderComparison(rows: Compared[], base: string, rounds: number): string {
  const med = (xs: number[]) => xs.length ? summarize(xs).median : NaN;
  const num = (x: number) =>
    Number.isNaN(x) ? "–" : Math.abs(x) >= 100 ? x.toFixed(0) : x.toPrecision(3);
  const lines = [
    `### This checkout ÷ ${base} (${rounds} round${rounds > 1 ? "s" : ""}, medians)`,
    "",
    "Times (`ms`) and memory (`rssKiB`): above 1 is slower or larger than the base.",
    "",
    "| figure | this | base | this ÷ base |",
    "|---|---:|---:|---:|",
  ];
  for (const r of rows) {
    const [a, b] = [med(r.this), med(r.base)];
    const ratio = b === 0 ? (a === 0 ? 1 : NaN) : a / b;
    lines.push(
      `| ${r.figure} | ${num(a)} | ${num(b)} | ${
        Number.isNaN(ratio) ? "–" : ratio.toFixed(2) + "×"
      } |`,
    );
  }
  return lines.join("\n") + "\n";
}
