/** Where and how a bench run happens: the machine, the tools' versions, the knobs, the checkout. */
import { lifeboatCmd } from "./lib.ts";

/** Runs a command and returns its trimmed output (or "?" if it fails). */
async function capture(cmd: string[]): Promise<string> {
  try {
    const o = await new Deno.Command(cmd[0], { args: cmd.slice(1), stderr: "piped" }).output();
    if (!o.success) return "?";
    return (new TextDecoder().decode(o.stdout) || new TextDecoder().decode(o.stderr)).trim();
  } catch {
    return "?";
  }
}

/**
 * Collects the machine, tool versions and settings (BENCH_* and LIFEBOAT_S3_* knobs, also spelled
 * out in front of `deno task bench` as the run's command) of this run; `wallS` is 0 until the
 * caller sets it at the end.
 */
export async function machine() {
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo");
  const meminfo = await Deno.readTextFile("/proc/meminfo");
  const root = lifeboatCmd().at(-1)!.replace(/\/main\.ts$/, "");
  const knobs: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) {
    if (k.startsWith("BENCH_") || k.startsWith("LIFEBOAT_S3_")) knobs[k] = v;
  }
  const sha = await capture(["git", "-C", root, "rev-parse", "--short", "HEAD"]);
  const dirty = await capture(["git", "-C", root, "status", "--porcelain", "--", "src", "main.ts"]);
  return {
    date: await capture(["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
    command: `${Object.entries(knobs).map(([k, v]) => `${k}=${v} `).join("")}deno task bench`,
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1] ?? "?",
    nproc: Number(await capture(["nproc"])),
    memGiB: Math.round(Number(/MemTotal:\s+(\d+)/.exec(meminfo)?.[1]) / 1024 / 1024),
    kernel: Deno.osRelease(),
    tools: {
      deno: Deno.version.deno,
      "aws-cli": (await capture(["aws", "--version"])).split(" ")[0].replace("aws-cli/", ""),
      sqlite3: (await capture(["sqlite3", "--version"])).split(" ")[0],
      moto: await capture(["python3", "-c", "import moto; print(moto.__version__)"]),
    },
    lifeboat: `${sha}${dirty ? " + uncommitted changes in src/" : ""}${
      root !== Deno.cwd() ? ` (${root})` : ""
    }`,
    knobs,
    wallS: 0,
  };
}

/** Where and how the run happened: what `machine()` collects, and the whole run's seconds. */
export type Meta = Awaited<ReturnType<typeof machine>>;
