/**
 * Static checks of the deployment files (no Docker or fly here): the Dockerfile compiles lifeboat
 * exactly as `deno task compile` does and starts `lifeboat watch -- app`; fly.toml (npm smol-toml)
 * sends SIGTERM, leaves time for the final backup, scrapes lifeboat's metrics and has no volume.
 */
import assert from "node:assert/strict";
import { basename } from "node:path";
import { parse as parseToml } from "smol-toml";
import { parse as parseYaml } from "yaml";
import hcl from "hcl2-parser";
import { loadConfig, parseListenAddr } from "../src/config.ts";
import { parseDuration } from "../src/duration.ts";
import {
  assertExplicitPermissions,
  compileEntry,
  compileFlags,
  compileOutput,
  LIFEBOAT_ALLOW,
} from "../testkit/compile.ts";

const ROOT = new URL("../", import.meta.url);
const read = (file: string) => Deno.readTextFileSync(new URL(file, ROOT));

/** One Dockerfile instruction: its keyword (upper case) and the rest of the line. */
interface Instruction {
  keyword: string;
  args: string;
}

/** One build stage: its base image, its name, and its instructions after FROM. */
interface Stage {
  from: string;
  name?: string;
  steps: Instruction[];
}

/** Splits a Dockerfile into stages (comments dropped, `\` continuations joined). */
function stages(text: string): Stage[] {
  const logical = text.replace(/\\\n/g, " ").split("\n").map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const out: Stage[] = [];
  for (const line of logical) {
    const [, keyword, args] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    assert.ok(keyword, `not an instruction: ${line}`);
    if (keyword.toUpperCase() === "FROM") {
      const [from, as, name] = args.split(/\s+/);
      assert.ok(as === undefined || /^as$/i.test(as), line);
      out.push({ from, name, steps: [] });
    } else {
      assert.ok(out.length > 0, `${line} before FROM`);
      out.at(-1)!.steps.push({ keyword: keyword.toUpperCase(), args: args.trim() });
    }
  }
  return out;
}

/** The `RUN` lines of a stage. */
const runs = (s: Stage) => s.steps.filter((i) => i.keyword === "RUN").map((i) => i.args);
/** The exec-form (JSON array) argument of an instruction. */
function execForm(s: Stage, keyword: string): string[] {
  const found = s.steps.filter((i) => i.keyword === keyword);
  assert.equal(found.length, 1, `one ${keyword}`);
  const value = JSON.parse(found[0].args);
  assert.ok(Array.isArray(value), `${keyword} in exec form (a JSON array: signals reach PID 1)`);
  return value;
}
/** Where a stage copies `src` from stage `stage` to. */
function copiedTo(s: Stage, stage: string, src: string): string {
  const hit = s.steps.find((i) =>
    i.keyword === "COPY" && i.args.split(/\s+/)[0] === `--from=${stage}` &&
    i.args.split(/\s+/)[1] === src
  );
  assert.ok(hit, `COPY --from=${stage} ${src}`);
  return hit.args.split(/\s+/).at(-1)!;
}
/** The variables a stage sets with ENV KEY=VALUE. */
function envOf(s: Stage): Record<string, string> {
  return Object.fromEntries(
    s.steps.filter((i) => i.keyword === "ENV").flatMap((i) =>
      i.args.split(/\s+/).map((kv) => kv.split("=", 2) as [string, string])
    ),
  );
}

const dockerfile = stages(read("Dockerfile"));
const build = dockerfile.find((s) => s.name === "build")!;
const image = dockerfile.at(-1)!;
const tasks = JSON.parse(read("deno.json")).tasks as Record<string, string>;

interface FlyToml {
  app: string;
  kill_signal?: string;
  kill_timeout?: number | string;
  env: Record<string, string>;
  deploy?: { strategy?: string; release_command?: string };
  mounts?: unknown;
  metrics?: { port: number; path: string };
  http_service: {
    internal_port: number;
    checks?: { path?: string }[];
    auto_stop_machines?: string | boolean;
    min_machines_running?: number;
  };
}
const fly = parseToml(read("fly.toml")) as unknown as FlyToml;

/** Deno's version as CI pins it (.github/workflows/ci.yml, setup-deno). */
function pinnedDeno(): string {
  const ci = parseYaml(read(".github/workflows/ci.yml"));
  const steps = Object.values(ci.jobs as Record<string, { steps: Record<string, unknown>[] }>)
    .flatMap((j) => j.steps);
  const setup = steps.find((s) => String(s.uses ?? "").startsWith("denoland/setup-deno@"));
  return String((setup?.with as Record<string, unknown>)["deno-version"]);
}

Deno.test("Dockerfile: the build stage is denoland/deno at the project's Deno version", () => {
  assert.equal(dockerfile[0], build, "the build stage comes first");
  assert.equal(pinnedDeno(), "2.9.6");
  assert.equal(build.from, `denoland/deno:${pinnedDeno()}`);
});

Deno.test("Dockerfile: lifeboat is compiled with exactly deno task compile's flags, after a frozen install", () => {
  const lines = runs(build);
  const compile = lines.filter((l) => compileOutput(l) === "/lifeboat");
  assert.equal(compile.length, 1, "one deno compile -o /lifeboat");
  assert.deepEqual(compileFlags(compile[0]), compileFlags(tasks.compile));
  assertExplicitPermissions(compileFlags(compile[0]), LIFEBOAT_ALLOW, "Dockerfile lifeboat");
  assert.equal(compileEntry(compile[0]), compileEntry(tasks.compile));
  const install = lines.indexOf("deno install --frozen");
  assert.ok(install >= 0 && install < lines.indexOf(compile[0]), "deno install --frozen first");
  // deno.json and deno.lock come in before the install (a cached layer), the sources after.
  const copies = build.steps.filter((i) => i.keyword === "COPY").map((i) => i.args.split(/\s+/));
  assert.deepEqual(copies[0], ["deno.json", "deno.lock", "./"]);
  const sources = copies.flatMap((c) => c.slice(0, -1));
  for (const needed of ["main.ts", "src", "examples"]) assert.ok(sources.includes(needed), needed);
});

Deno.test("Dockerfile: the example app is compiled with its own, smaller permissions", () => {
  const [app] = runs(build).filter((l) =>
    /^deno compile /.test(l) && compileOutput(l) !== "/lifeboat"
  );
  assert.ok(app, "a second deno compile");
  assert.equal(compileEntry(app), "examples/app.ts");
  const example = [
    "--allow-read",
    "--allow-write",
    "--allow-net=0.0.0.0,127.0.0.1",
    "--allow-env=PORT,HOST,LIFEBOAT_DB,DB_PATH",
  ];
  assertExplicitPermissions(compileFlags(app), example, "Dockerfile example-app");
  assert.deepEqual(compileFlags(app), ["-q", ...example]);
  const task = compileFlags(tasks.example.replace(/^deno run/, "deno compile"));
  assert.deepEqual(task, ["-q", ...example], "deno task example uses the same flags");
});

Deno.test("Dockerfile: the image starts `lifeboat watch -- example-app`; a `lifeboat` stage holds the binary alone", () => {
  const lifeboat = copiedTo(image, "build", "/lifeboat");
  const entry = execForm(image, "ENTRYPOINT");
  assert.equal(basename(entry[0]), "lifeboat");
  assert.equal(entry[0], lifeboat, "the binary copied from the build stage");
  assert.deepEqual(entry.slice(1), ["watch", "--"]);
  const app = copiedTo(image, "build", "/example-app");
  assert.deepEqual(execForm(image, "CMD"), [app]);
  assert.ok(!image.steps.some((i) => i.keyword === "VOLUME"), "no volume: that is the point");
  assert.equal(envOf(image).LIFEBOAT_DB, fly.env.LIFEBOAT_DB);
  assert.equal(Number(envOf(image).PORT), fly.http_service.internal_port);

  const only = dockerfile.find((s) => s.name === "lifeboat");
  assert.ok(only, "a stage named lifeboat");
  assert.equal(only.from, "scratch");
  assert.deepEqual(only.steps, [{ keyword: "COPY", args: "--from=build /lifeboat /lifeboat" }]);
});

Deno.test("fly.toml: SIGTERM, and a kill_timeout that fits the app's stop, then the final backup, with a margin", () => {
  assert.equal(fly.kill_signal, "SIGTERM");
  const raw = fly.kill_timeout;
  const killMs = typeof raw === "number" ? raw * 1000 : parseDuration(String(raw));
  assert.ok(killMs !== undefined, `kill_timeout ${raw} is a duration`);
  const cfg = loadConfig({}, fly.env);
  const margin = 5_000; // process exit, fly's own slack
  const needed = cfg.appStopTimeoutMs + cfg.shutdownTimeoutMs + margin;
  assert.ok(
    killMs >= needed,
    `kill_timeout ${raw} < LIFEBOAT_APP_STOP_TIMEOUT ${cfg.appStopTimeoutMs} ms + ` +
      `LIFEBOAT_SHUTDOWN_TIMEOUT ${cfg.shutdownTimeoutMs} ms + ${margin} ms`,
  );
  assert.ok(killMs <= 300_000, "shared-CPU machines allow at most 300 s");
});

Deno.test("fly.toml: [env] configures lifeboat validly; [metrics] scrapes its metrics port", () => {
  for (
    const name of [
      "AWS_ROLE_ARN",
      "LIFEBOAT_S3_ENDPOINT",
      "LIFEBOAT_S3_REGION",
      "LIFEBOAT_URL",
      "LIFEBOAT_DB",
    ]
  ) {
    assert.ok(fly.env[name], `[env] ${name}`);
  }
  const cfg = loadConfig({}, fly.env); // throws on a malformed ARN, URL, duration or address
  assert.equal(cfg.store.kind, "s3");
  assert.equal(cfg.s3.role?.roleArn, fly.env.AWS_ROLE_ARN);
  assert.ok(fly.metrics, "a [metrics] section");
  assert.equal(fly.metrics.port, parseListenAddr(fly.env.LIFEBOAT_METRICS_ADDR).port);
  assert.equal(parseListenAddr(fly.env.LIFEBOAT_METRICS_ADDR).hostname, "", "every interface");
  assert.equal(fly.metrics.path, "/metrics");
  assert.notEqual(fly.metrics.port, fly.http_service.internal_port, "not the app's port");
  assert.equal(fly.http_service.internal_port, Number(fly.env.PORT));
  assert.ok(fly.http_service.checks?.some((c) => c.path === "/healthz"), "the app's health check");
});

Deno.test("fly.toml: no volume, no release_command, and never two machines at once on deploy", () => {
  assert.equal(fly.mounts, undefined, "no [mounts]: the point is surviving without a volume");
  assert.equal(fly.deploy?.release_command, undefined, "restore runs in the entrypoint");
  assert.ok(
    ["rolling", "immediate"].includes(fly.deploy?.strategy ?? "rolling"),
    `strategy ${fly.deploy?.strategy}: bluegreen and canary run two machines on one database`,
  );
});

Deno.test("Dockerfile: the published image (release stage) is the release's tested binary, one per platform, compiled nowhere else", () => {
  const release = dockerfile.find((s) => s.name === "release");
  assert.ok(release, "a stage named release (release.yml builds --target release)");
  assert.equal(release.from, image.from, "the base of the example image: glibc, no shell");
  assert.deepEqual(runs(release), [], "nothing is built or compiled in it");
  assert.deepEqual(release.steps.filter((i) => i.keyword === "COPY"), [
    { keyword: "COPY", args: "--from=binaries --chmod=0755 ${TARGETARCH}/lifeboat /lifeboat" },
  ]);
  assert.ok(release.steps.some((i) => i.keyword === "ARG" && i.args === "TARGETARCH"));
  assert.deepEqual(execForm(release, "ENTRYPOINT"), ["/lifeboat"]);
  // The `binaries` context is the directory release.yml fills with the binary jobs' binaries.
  const workflow = parseYaml(read(".github/workflows/release.yml"));
  const build = (workflow.jobs.image.steps as { run?: string }[])
    .find((s) => s.run?.includes("docker buildx build"))!.run!;
  assert.match(build, /--target release\b/);
  assert.match(build, /--build-context binaries=dist\/image\b/);
  assert.equal(dockerfile.at(-1), image, "the example stays the default target (fly deploy)");
});

Deno.test("fly.toml: auto stop sends the signal (stop, never suspend: no signal, no final backup)", () => {
  const stop = fly.http_service.auto_stop_machines;
  assert.ok(stop === "stop" || stop === "off" || stop === false, `auto_stop_machines = ${stop}`);
  assert.equal(typeof fly.http_service.min_machines_running, "number");
  const readme = read("README.md");
  assert.match(
    readme,
    /`"suspend"` fly freezes the machine's memory and sends\s+\*\*no signal\*\*/,
  );
});

Deno.test("fly.toml and infra/example.tfvars name the same app, bucket, region, role and database", () => {
  const [vars, error] = hcl.parseToObject(read("infra/example.tfvars")) as [
    Record<string, string> | null,
    unknown,
  ];
  assert.ok(vars && !error, `infra/example.tfvars: ${JSON.stringify(error)}`);
  assert.equal(
    vars.fly_app,
    fly.app,
    "infra's fly_app is fly.toml's app (the role trusts only it)",
  );
  const prefix = vars.prefix ?? vars.fly_app;
  assert.equal(fly.env.LIFEBOAT_URL, `s3://${vars.bucket_name}/${prefix}`);
  assert.equal(fly.env.LIFEBOAT_S3_REGION, vars.region);
  assert.equal(fly.env.LIFEBOAT_DB, vars.db_path);
  const role = vars.role_name ?? `lifeboat-${vars.fly_app}`;
  assert.match(fly.env.AWS_ROLE_ARN, new RegExp(`:role/${role}$`));
});
