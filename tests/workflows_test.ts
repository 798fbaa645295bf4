/**
 * Static checks of the GitHub Actions workflows (npm yaml): OIDC permissions, apply only from main,
 * the OpenTofu steps, pinned actions, concurrency, CI coverage and the release build.
 */
import assert from "node:assert/strict";
import { parse } from "yaml";
import { assertExplicitPermissions, compileFlags, LIFEBOAT_ALLOW } from "../testkit/compile.ts";

const WORKFLOWS = new URL("../.github/workflows/", import.meta.url);
const ROOT = new URL("../", import.meta.url);

/** One step of a job. */
interface Step {
  name?: string;
  uses?: string;
  run?: string;
  if?: string;
  "working-directory"?: string;
  with?: Record<string, unknown>;
  env?: Record<string, unknown>;
}

/** One job of a workflow. */
interface Job {
  if?: string;
  needs?: string | string[];
  environment?: string | { name: string };
  outputs?: Record<string, string>;
  permissions?: Record<string, string>;
  concurrency?: Concurrency;
  env?: Record<string, unknown>;
  steps: Step[];
}

/** A workflow's or a job's concurrency setting. */
interface Concurrency {
  group: string;
  "cancel-in-progress"?: boolean | string;
}

/** A parsed workflow and its text (the text keeps the comments that YAML drops). */
interface Workflow {
  file: string;
  text: string;
  on: Record<string, Record<string, unknown> | null>;
  permissions?: Record<string, string>;
  concurrency?: Concurrency;
  env?: Record<string, unknown>;
  jobs: Record<string, Job>;
}

/** Parses .github/workflows/<file>. */
function load(file: string): Workflow {
  const text = Deno.readTextFileSync(new URL(file, WORKFLOWS));
  return { ...parse(text), file, text } as Workflow;
}

/** Every workflow file in .github/workflows. */
function loadAll(): Workflow[] {
  return [...Deno.readDirSync(WORKFLOWS)]
    .filter((e) => e.isFile && /\.ya?ml$/.test(e.name))
    .map((e) => load(e.name));
}

const infra = load("infra.yml");
const ci = load("ci.yml");
const release = load("release.yml");

/** Every [job id, job, step] of a workflow, in order. */
function steps(workflow: Workflow): [string, Job, Step][] {
  return Object.entries(workflow.jobs).flatMap(([id, job]) =>
    job.steps.map((step): [string, Job, Step] => [id, job, step])
  );
}

/** The steps whose `run` matches `command`; fails the test when there is none. */
function running(workflow: Workflow, command: RegExp): [string, Job, Step][] {
  const found = steps(workflow).filter(([, , step]) => command.test(step.run ?? ""));
  assert.ok(found.length > 0, `${workflow.file}: no step runs ${command}`);
  return found;
}

/** The only step whose `run` matches `command`. */
function theStep(workflow: Workflow, command: RegExp): [string, Job, Step] {
  const found = running(workflow, command);
  assert.equal(found.length, 1, `${workflow.file}: one step should run ${command}`);
  return found[0];
}

/** The steps using an action (`owner/repo@ref`) whose name starts with `action`. */
function using(workflow: Workflow, action: string): [string, Job, Step][] {
  return steps(workflow).filter(([, , step]) => step.uses?.startsWith(`${action}@`));
}

/** The permissions in force for a job: its own block, else the workflow's. */
function permissionsOf(workflow: Workflow, job: Job): Record<string, string> {
  return job.permissions ?? workflow.permissions ?? {};
}

/** The `&&`-joined terms of an `if:` expression (fails if it also has `||`). */
function conjunction(expression: string | undefined): string[] {
  assert.ok(expression, "an if: condition");
  assert.ok(!expression.includes("||"), `${expression} should be a plain && of conditions`);
  return expression.replace(/^\$\{\{|\}\}$/g, "").split("&&").map((t) =>
    t.trim().replace(/\s+/g, " ")
  );
}

const PINNED = /^[\w.-]+\/[\w.\/-]+@([0-9a-f]{40}|v\d+\.\d+\.\d+)$/;

Deno.test("workflows: every action is pinned to a full commit SHA (with its version) or an exact vX.Y.Z", () => {
  const refs = new Map<string, string>();
  const workflows = loadAll();
  assert.deepEqual(workflows.map((w) => w.file).sort(), ["ci.yml", "infra.yml", "release.yml"]);
  for (const workflow of workflows) {
    for (const [job, , step] of steps(workflow).filter(([, , s]) => s.uses)) {
      const uses = step.uses!;
      assert.match(uses, PINNED, `${workflow.file} ${job}: ${uses} is not pinned`);
      const [action, ref] = uses.split("@");
      if (ref.length === 40) {
        const line = workflow.text.split("\n").find((l) => l.includes(uses));
        assert.match(
          line ?? "",
          / # v\d+\.\d+\.\d+$/,
          `${workflow.file}: say which version ${uses} is`,
        );
      }
      assert.equal(refs.get(action) ?? ref, ref, `${action} is pinned to two versions`);
      refs.set(action, ref);
    }
  }
  for (
    const action of [
      "actions/checkout",
      "opentofu/setup-opentofu",
      "aws-actions/configure-aws-credentials",
    ]
  ) {
    assert.ok(refs.has(action), `${action} should be used`);
  }
});

Deno.test("infra.yml: runs on pull requests touching infra/**, on pushes to main, and by hand", () => {
  assert.deepEqual(infra.on.pull_request?.paths, ["infra/**", ".github/workflows/infra.yml"]);
  assert.deepEqual(infra.on.push?.branches, ["main"]);
  assert.deepEqual(infra.on.push?.paths, infra.on.pull_request?.paths);
  assert.ok("workflow_dispatch" in infra.on);
});

Deno.test("infra.yml: tofu fmt -check, init, validate and plan run, and the plan goes to the job summary", () => {
  running(infra, /^tofu fmt -check -recursive\b/);
  running(infra, /^tofu init -backend=false\b/);
  running(infra, /^tofu validate\b/);
  const [planJob, , plan] = theStep(infra, /\btofu plan\b.* -out=tfplan\b/);
  const [summaryJob, , summary] = theStep(infra, /\$GITHUB_STEP_SUMMARY/);
  assert.equal(summaryJob, planJob);
  assert.match(summary.run!, /tofu show -no-color tfplan/);
  const order = infra.jobs[planJob].steps;
  assert.ok(order.indexOf(plan) < order.indexOf(summary), "the summary shows the plan just made");
  for (const [, , setup] of using(infra, "opentofu/setup-opentofu")) {
    assert.equal(setup.with?.tofu_wrapper, false, "plain tofu output");
    assert.match(String(setup.with?.tofu_version), /\d+\.\d+\.\d+|TOFU_VERSION/);
  }
  assert.match(
    String(infra.env?.TOFU_VERSION),
    /^1\.(1[0-9])\.\d+$/,
    "OpenTofu >= 1.10 for use_lockfile",
  );
});

Deno.test("infra.yml: the backend is configured at init from repository variables, no account id in the repo", () => {
  const inits = running(infra, /^tofu init\s+-backend-config/);
  assert.equal(inits.length, 2, "the plan job's and the apply job's");
  for (const [, job, init] of inits) {
    for (const setting of ["bucket=$TF_STATE_BUCKET", "key=$TF_STATE_KEY", "region=$AWS_REGION"]) {
      assert.ok(init.run!.includes(`-backend-config="${setting}"`), setting);
    }
    assert.equal(job.env?.TF_STATE_BUCKET, "${{ vars.TF_STATE_BUCKET }}");
  }
  for (const workflow of loadAll()) assert.doesNotMatch(workflow.text, /\b\d{12}\b/, workflow.file);
});

Deno.test("infra.yml: apply runs only on pushes to main, behind the infra environment, and applies the saved plan the plan job made (no -auto-approve)", () => {
  const [applyJob, jobDef, apply] = theStep(infra, /\btofu apply\b/);
  const [planJob, planDef, plan] = theStep(infra, /\btofu plan\b/);
  assert.notEqual(applyJob, planJob, "the apply waits for the review in a job of its own");
  assert.deepEqual(
    conjunction(jobDef.if).sort(),
    ["github.event_name == 'push'", "github.ref == 'refs/heads/main'"],
  );
  assert.equal(jobDef.environment, "infra", "required reviewers are set on the environment");
  assert.equal(jobDef.needs, planJob);
  assert.match(apply.run!, /^tofu apply\b.* tfplan$/);
  for (const [, , step] of steps(infra)) assert.doesNotMatch(step.run ?? "", /-auto-approve/);
  assert.ok(!jobDef.steps.some((s) => /\btofu plan\b/.test(s.run ?? "")), "no fresh plan");
  assert.match(plan.run!, /^tofu plan -lock=false .*-out=tfplan$/, "a plan only reads");
  // The plan job keeps exactly the plan it summarised, and says which one it is.
  const saved = planDef.steps.find((s) => s.uses?.startsWith("actions/upload-artifact@"));
  assert.ok(saved, "the plan job uploads the saved plan");
  assert.deepEqual([saved.with?.name, saved.with?.path], ["tfplan", "infra/tfplan"]);
  assert.deepEqual(conjunction(saved.if).sort(), conjunction(jobDef.if).sort());
  const order = planDef.steps;
  assert.ok(order.indexOf(plan) < order.indexOf(saved));
  assert.match(String(planDef.outputs?.sha256), /steps\.saved\.outputs\.sha256/);
  const digest = planDef.steps.find((s) => (s as Step & { id?: string }).id === "saved");
  assert.match(digest?.run ?? "", /sha256sum tfplan/);
  // The apply job takes that artifact, checks it is the one, then applies it.
  const applying = jobDef.steps;
  const fetched = applying.findIndex((s) => s.uses?.startsWith("actions/download-artifact@"));
  assert.ok(fetched >= 0, "the apply job downloads the saved plan");
  assert.equal(applying[fetched].with?.name, "tfplan");
  const check = applying.findIndex((s) => /sha256sum -c/.test(s.run ?? ""));
  assert.match(String(jobDef.env?.PLAN_SHA256), /needs\.plan\.outputs\.sha256/);
  assert.ok(fetched < check && check < applying.indexOf(apply), "download, check, apply");
});

Deno.test("infra.yml: AWS credentials come from GitHub OIDC (id-token: write); plans use the plan role, only the reviewed apply the deploy role", () => {
  const aws = using(infra, "aws-actions/configure-aws-credentials");
  assert.equal(aws.length, 2, "the plan job and the apply job");
  const [applyJob] = theStep(infra, /\btofu apply\b/);
  const [planJob] = theStep(infra, /\btofu plan\b/);
  for (const [jobId, job, step] of aws) {
    assert.deepEqual(permissionsOf(infra, job), { "id-token": "write", "contents": "read" });
    assert.equal(step.with?.["aws-region"], "${{ vars.AWS_REGION }}");
    for (const key of ["aws-access-key-id", "aws-secret-access-key", "role-duration-seconds"]) {
      assert.ok(!(key in (step.with ?? {})), `${jobId}: ${key}: OIDC only`);
    }
    const role = String(step.with?.["role-to-assume"]);
    if (jobId === applyJob) assert.equal(role, "${{ vars.INFRA_ROLE_ARN }}");
    else {
      assert.equal(jobId, planJob);
      assert.equal(role, "${{ vars.INFRA_PLAN_ROLE_ARN || vars.INFRA_ROLE_ARN }}");
    }
  }
  assert.deepEqual(infra.permissions, { contents: "read" }, "other jobs get no token");
  const plan = infra.jobs[planJob];
  assert.match(plan.if ?? "", /vars\.INFRA_ROLE_ARN != ''/, `${planJob}: waits for the bootstrap`);
  assert.match(
    plan.if ?? "",
    /head\.repo\.full_name == github\.repository/,
    `${planJob}: not for forks`,
  );
  // The deploy role trusts the environment only (infra/README.md, bootstrap).
  const readme = Deno.readTextFileSync(new URL("infra/README.md", ROOT));
  assert.match(
    readme,
    /"token\.actions\.githubusercontent\.com:sub": "repo:OWNER\/REPO:environment:infra"/,
  );
});

Deno.test("infra.yml: concurrency keeps two applies from ever overlapping", () => {
  const [applyJob] = theStep(infra, /\btofu apply\b/);
  const concurrency = infra.jobs[applyJob].concurrency ?? infra.concurrency;
  assert.ok(concurrency, "a concurrency group");
  // Every push to main must fall in one group: built only from constants and github.ref.
  assert.match(concurrency.group, /^[\w-]*(\$\{\{ github\.ref \}\}[\w-]*)*$/);
  assert.equal(concurrency["cancel-in-progress"], false, "an apply is never killed midway");
});

Deno.test("ci.yml: runs on every push and every pull request", () => {
  assert.deepEqual(Object.keys(ci.on).sort(), ["pull_request", "push"]);
  assert.equal(ci.on.push, null, "no branch or path filter");
  assert.equal(ci.on.pull_request, null, "no branch or path filter");
  assert.deepEqual(ci.permissions, { contents: "read" });
});

Deno.test("ci.yml: installs moto_server and Deno 2.9.6, then fmt, lint, check, deno task test and actionlint", () => {
  const job = ci.jobs.test;
  assert.equal(job.env?.AWS_EC2_METADATA_DISABLED, "true");
  const order = (command: RegExp) => job.steps.indexOf(theStep(ci, command)[2]);
  const moto = order(/pip install "moto\[server\]==5\.2\.\*"/);
  const [[, , deno]] = using(ci, "denoland/setup-deno");
  assert.equal(deno.with?.["deno-version"], "2.9.6");
  const sequence = [
    job.steps.indexOf(running(ci, /^deno install --frozen$/).find(([id]) => id === "test")![2]),
    order(/^deno fmt --check$/),
    order(/^deno lint$/),
    order(/^deno check main\.ts\b/),
    order(/^deno task test$/),
    order(/^bash scripts\/actionlint\.sh$/),
  ];
  assert.deepEqual(
    sequence,
    [...sequence].sort((a, b) => a - b),
    "frozen install, fmt, lint, check, test, actionlint",
  );
  assert.ok(moto < sequence[4] && job.steps.indexOf(deno) < sequence[0]);
  // The reliability tests run after the suite, at CI size (as .ci/run runs them).
  const [, , reliability] = theStep(ci, /^deno task test:reliability$/);
  assert.ok(job.steps.indexOf(reliability) > sequence[4]);
  assert.equal(reliability.env?.LIFEBOAT_SOAK_MACHINES, "10");
  const ciRun = Deno.readTextFileSync(new URL(".ci/run", ROOT));
  assert.match(
    ciRun,
    /LIFEBOAT_SOAK_MACHINES="\$\{LIFEBOAT_SOAK_MACHINES:-10\}" \\\n\s+run_tests reliability deno task test:reliability/,
  );
  assert.equal(using(ci, "actions/setup-python").length, 1);
});

Deno.test("ci.yml: tests that need root run again with sudo after the suite (hosted runners are not root)", () => {
  const [job, , test] = theStep(ci, /^deno task test$/);
  const [sudoJob, , sudo] = theStep(ci, /^sudo -E\b.* deno test -q -A (tests\/\S+_test\.ts ?)+$/);
  // Every test file that checks for root (its root tests skip as any other user) runs with sudo.
  const rootFiles = [...Deno.readDirSync(new URL("tests/", ROOT))]
    .map((e) => e.name)
    .filter((n) => n.endsWith("_test.ts"))
    .filter((n) => /Deno\.uid\(\) [!=]==/.test(Deno.readTextFileSync(new URL(`tests/${n}`, ROOT))));
  assert.deepEqual(rootFiles.sort(), ["container_test.ts", "safety_test.ts"]);
  for (const f of rootFiles) assert.ok(sudo.run!.includes(`tests/${f}`), `${f} runs with sudo`);
  assert.equal(sudoJob, job);
  const order = ci.jobs[job].steps;
  assert.ok(order.indexOf(test) < order.indexOf(sudo));
  assert.match(sudo.run!, /"PATH=\$PATH"/, "sudo finds deno and the cache");
  assert.match(sudo.run!, /DENO_DIR=/);
  const safety = Deno.readTextFileSync(new URL("tests/safety_test.ts", ROOT));
  assert.match(safety, /ignore: !ROOT_USER/, "the root test skips as another user");
  assert.match(safety, /skipped: needs root/, "and says so");
});

Deno.test("ci.yml: builds the binary with deno task compile and runs the round trips with it", () => {
  const [job, , trips] = theStep(ci, /LIFEBOAT_BIN=\.\/lifeboat deno task test:compat/);
  assert.equal(job, "test");
  const compile = ci.jobs[job].steps.find((s) => s.run === "deno task compile");
  assert.ok(compile, "deno task compile in the same job");
  const order = ci.jobs[job].steps;
  assert.ok(order.indexOf(compile) < order.indexOf(trips));
  assert.ok(using(ci, "actions/setup-python").length === 1, "moto_server for the round trips");
});

Deno.test("ci.yml: a compat job runs scripts/compat.sh against radosgw, from source and compiled, and may not skip", () => {
  const runs = running(ci, /\bbash scripts\/compat\.sh$/);
  assert.equal(runs.length, 2);
  const [[job, jobDef, source], [, , binary]] = runs;
  assert.ok(runs.every(([id]) => id === job), "one job");
  assert.ok(runs.every(([, , s]) => s.env?.LIFEBOAT_COMPAT_REQUIRED === "1"), "a skip fails");
  assert.doesNotMatch(source.run!, /LIFEBOAT_BIN/);
  assert.match(binary.run!, /^LIFEBOAT_BIN=\.\/lifeboat bash scripts\/compat\.sh$/);
  const compile = jobDef.steps.findIndex((s) => s.run === "deno task compile");
  assert.ok(compile > jobDef.steps.indexOf(source) && compile < jobDef.steps.indexOf(binary));
  assert.equal((jobDef as Job & { container?: string }).container, "debian:bookworm");
  const ciRun = Deno.readTextFileSync(new URL(".ci/run", ROOT));
  assert.match(ciRun, /bash scripts\/compat\.sh/, ".ci/run runs it too");
});

/** deno.json's tasks. */
const TASKS = JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT))).tasks;

Deno.test("deno.json: explicit permission flags, the same for deno task lifeboat and the binary", () => {
  assertExplicitPermissions(compileFlags(TASKS.compile), LIFEBOAT_ALLOW, "deno task compile");
  assert.ok(compileFlags(TASKS.compile).includes("--include"), "the snapshot worker is bundled");
  assert.match(TASKS.compile, /--include src\/snapshot\/worker\.ts /);
  const run = compileFlags(TASKS.lifeboat.replace(/^deno run/, "deno compile"));
  assertExplicitPermissions(run, LIFEBOAT_ALLOW, "deno task lifeboat");
  assert.ok(!("permissions" in JSON.parse(Deno.readTextFileSync(new URL("deno.json", ROOT)))));
  // The compat run and the reliability tests (at full size) are their own tasks.
  assert.match(TASKS.test, /--ignore=tests\/compat,tests\/reliability tests\/$/);
  assert.match(
    TASKS["test:reliability"],
    /^LIFEBOAT_TEST_SIZE=full .*deno test .*tests\/reliability\/$/,
  );
  for (const n of ["soak", "crash", "busy", "lifecycle"]) {
    assert.ok(Deno.statSync(new URL(`tests/reliability/${n}_test.ts`, ROOT)).isFile, n);
  }
  // Both suites share one moto_server across their test files.
  for (const task of [TASKS.test, TASKS["test:reliability"]]) {
    assert.match(
      task,
      /deno run -q -A scripts\/run_tests\.ts (--extra-jobs=\d+ )?deno test -q -A --parallel /,
    );
  }
  assert.match(TASKS["test:compat"], /tests\/compat\/$/);
});

Deno.test("release.yml: on a tag, each target is compiled on its own arch with exactly deno task compile's flags", () => {
  assert.ok(release.on.push?.tags, "runs on tags");
  assert.deepEqual(Object.keys(release.on), ["push"]);
  const [job, , step] = theStep(release, /deno compile/);
  const matrix = release.jobs[job] as Job & {
    strategy: { matrix: { include: { target: string; runner: string }[] } };
    "runs-on": string;
  };
  assert.equal(matrix["runs-on"], "${{ matrix.runner }}");
  assert.deepEqual(matrix.strategy.matrix.include, [
    { target: "x86_64-unknown-linux-gnu", runner: "ubuntu-24.04" },
    { target: "aarch64-unknown-linux-gnu", runner: "ubuntu-24.04-arm" },
  ]);
  assert.equal(release.jobs[job].env?.TARGET, "${{ matrix.target }}");
  assert.match(step.run!, / --target "\$TARGET" -o "dist\/lifeboat-\$TARGET" main\.ts$/);
  assert.deepEqual(compileFlags(step.run!), compileFlags(TASKS.compile));
});

Deno.test("release.yml: each binary is the tagged version and passes the round trips before it is attached; the release is published last", () => {
  const [job, , compile] = theStep(release, /deno compile/);
  const [, , install] = theStep(release, /^deno install --frozen$/);
  const [versionJob, , version] = theStep(release, /--version\)/);
  const [tripJob, , trips] = theStep(
    release,
    /LIFEBOAT_BIN="dist\/lifeboat-\$TARGET" deno task test:compat/,
  );
  const [sumJob, , sums] = theStep(release, /sha256sum "lifeboat-/);
  const [uploadJob, jobDef, upload] = theStep(release, /gh release upload/);
  assert.ok([versionJob, tripJob, sumJob, uploadJob].every((j) => j === job), "one job per target");
  const order = jobDef.steps;
  const at = (s: Step) => order.indexOf(s);
  assert.ok(at(install) < at(compile) && at(compile) < at(version) && at(version) < at(trips));
  assert.ok(at(trips) < at(sums) && at(sums) < at(upload));
  assert.match(version.run!, /"v\$version" != "\$TAG"/);
  assert.equal(sums["working-directory"], "dist");
  assert.match(sums.run!, /sha256sum "lifeboat-\$TARGET" > "lifeboat-\$TARGET\.sha256"/);
  assert.match(
    upload.run!,
    /^gh release upload "\$TAG" "dist\/lifeboat-\$TARGET" "dist\/lifeboat-\$TARGET\.sha256"$/m,
  );
  assert.match(
    upload.run!,
    /^test "\$\(gh release view "\$TAG" --json isDraft --jq \.isDraft\)" = true$/m,
  );
  assert.equal(upload.env?.GH_TOKEN, "${{ github.token }}");
  assert.equal(using(release, "actions/setup-python").length, 1, "moto_server for the round trips");
  // The binary's provenance, attested before it is attached.
  const [[attestJob, , attest]] = using(release, "actions/attest-build-provenance")
    .filter(([, , s]) => s.with?.["subject-path"]);
  assert.equal(attestJob, job);
  assert.equal(attest.with?.["subject-path"], "dist/lifeboat-${{ matrix.target }}");
  assert.ok(at(trips) < at(attest) && at(attest) < at(upload));
  const [draftJob, , draft] = theStep(release, /gh release create/);
  assert.match(draft.run!, /--draft/);
  assert.match(draft.run!, /isDraft/, "a published release is never built again");
  const [publishJob, , publish] = theStep(release, /gh release edit "\$TAG" --draft=false/);
  const needs = (id: string) => release.jobs[id].needs;
  assert.equal(needs(job), draftJob);
  assert.deepEqual(needs(publishJob), [job, "image"]);
  assert.ok(publish);
  for (const id of [draftJob, publishJob]) {
    assert.deepEqual(permissionsOf(release, release.jobs[id]), { contents: "write" });
  }
  assert.deepEqual(permissionsOf(release, release.jobs[job]), {
    contents: "write",
    "id-token": "write",
    attestations: "write",
  });
  assert.deepEqual(release.permissions, { contents: "read" });
});

Deno.test("workflows: nothing published is ever replaced (no --clobber); CI and release install with deno install --frozen", () => {
  for (const workflow of loadAll()) {
    for (const [id, , step] of steps(workflow)) {
      const commands = (step.run ?? "").replace(/^\s*#.*$/gm, ""); // comments may say why not
      assert.doesNotMatch(commands, /--clobber/, `${workflow.file} ${id}`);
    }
  }
  for (const [workflow, jobs] of [[ci, ["test", "compat"]], [release, ["binary"]]] as const) {
    for (const id of jobs) {
      const steps = workflow.jobs[id].steps;
      const install = steps.findIndex((s) => s.run === "deno install --frozen");
      const setup = steps.findIndex((s) => s.uses?.startsWith("denoland/setup-deno@"));
      const firstDeno = steps.findIndex((s, i) => i !== install && /\bdeno\b/.test(s.run ?? ""));
      assert.ok(setup < install && install < firstDeno, `${workflow.file} ${id}: frozen first`);
    }
  }
});

Deno.test("release.yml: the image is built for amd64 and arm64 from the tested binaries, pushed to ghcr.io by version, with a provenance attestation", () => {
  const job = release.jobs.image;
  assert.ok(job, "an image job");
  assert.equal(job.needs, "binary", "after every binary passed its round trips");
  assert.deepEqual(permissionsOf(release, job), {
    contents: "read",
    packages: "write",
    "id-token": "write",
    attestations: "write",
  });
  // The binary jobs hand over their binaries and .sha256 files; the image job checks them.
  const [, binaryJob] = theStep(release, /gh release upload/);
  const handed = binaryJob.steps.find((s) => s.uses?.startsWith("actions/upload-artifact@"));
  assert.equal(handed?.with?.name, "lifeboat-${{ matrix.target }}");
  assert.match(String(handed?.with?.path), /dist\/lifeboat-\$\{\{ matrix\.target \}\}\.sha256/);
  const steps = job.steps;
  const at = (re: RegExp) => steps.findIndex((s) => re.test(s.run ?? ""));
  const fetched = steps.findIndex((s) => s.uses?.startsWith("actions/download-artifact@"));
  assert.equal(steps[fetched].with?.pattern, "lifeboat-*");
  const check = at(
    /^sha256sum -c lifeboat-x86_64-unknown-linux-gnu\.sha256 lifeboat-aarch64-unknown-linux-gnu\.sha256$/m,
  );
  assert.match(steps[check].run!, /cp lifeboat-x86_64-unknown-linux-gnu image\/amd64\/lifeboat/);
  assert.match(steps[check].run!, /cp lifeboat-aarch64-unknown-linux-gnu image\/arm64\/lifeboat/);
  const build = at(/docker buildx build/);
  assert.ok(fetched < check && check < build);
  const run = steps[build].run!;
  for (
    const flag of [
      "--platform linux/amd64,linux/arm64",
      "--target release",
      "--build-context binaries=dist/image",
      '--tag "$image:$version"',
      "--push",
    ]
  ) assert.ok(run.includes(flag), flag);
  assert.match(run, /image="ghcr\.io\/\$\{GITHUB_REPOSITORY,,\}"/);
  assert.match(run, /version="\$\{TAG#v\}"/);
  assert.ok(
    run.indexOf("docker buildx imagetools inspect") < run.indexOf("docker buildx build"),
    "an existing tag is never pushed again",
  );
  assert.doesNotMatch(run, /deno compile/);
  const [[, , attest]] = using(release, "actions/attest-build-provenance")
    .filter(([id]) => id === "image");
  assert.deepEqual(attest.with, {
    "subject-name": "${{ steps.push.outputs.name }}",
    "subject-digest": "${{ steps.push.outputs.digest }}",
    "push-to-registry": true,
  });
  assert.equal((steps[build] as Step & { id?: string }).id, "push");
  assert.ok(steps.indexOf(attest) > build);
});

Deno.test("dependabot.yml: weekly updates of the pinned actions and the Docker base images; npm only once a package.json exists", () => {
  const text = Deno.readTextFileSync(new URL(".github/dependabot.yml", ROOT));
  const config = parse(text) as {
    version: number;
    updates: { "package-ecosystem": string; directory: string; schedule: { interval: string } }[];
  };
  assert.equal(config.version, 2);
  const byEcosystem = new Map(config.updates.map((u) => [u["package-ecosystem"], u]));
  const actions = byEcosystem.get("github-actions");
  assert.ok(actions, "github-actions is covered");
  assert.equal(actions.directory, "/");
  assert.ok(["daily", "weekly"].includes(actions.schedule.interval));
  const docker = byEcosystem.get("docker");
  assert.ok(docker, "the Dockerfile's base images are covered");
  assert.equal(docker.directory, "/");
  assert.ok(["daily", "weekly"].includes(docker.schedule.interval));
  const hasPackageJson = (() => {
    try {
      return Deno.statSync(new URL("package.json", ROOT)).isFile;
    } catch {
      return false;
    }
  })();
  assert.equal(byEcosystem.has("npm"), hasPackageJson, "npm needs a package.json to read");
  assert.match(text, /no Deno ecosystem/, "says why deno.json is bumped by hand");
  const readme = Deno.readTextFileSync(new URL("README.md", ROOT));
  assert.match(readme, /## Updating dependencies/, "the manual bump is documented");
});

Deno.test("infra.yml: every tofu init is -lockfile=readonly once infra/.terraform.lock.hcl exists, and a manual run prints one to commit", () => {
  const READONLY =
    "${{ hashFiles('infra/.terraform.lock.hcl') != '' && '-lockfile=readonly' || '' }}";
  const inits = running(infra, /^tofu init\b/);
  assert.equal(inits.length, 3, "the check job's, the plan job's and the apply job's init");
  for (const [job, , step] of inits) {
    assert.match(step.run!, / \$LOCKFILE$/, job);
    assert.equal(step.env?.LOCKFILE, READONLY, `${job}: ${step.name}`);
  }
  const [, , warn] = theStep(infra, /::warning file=infra\/versions\.tf::/);
  assert.equal(warn.if, "hashFiles('infra/.terraform.lock.hcl') == ''");
  const [, , lock] = theStep(infra, /\btofu providers lock\b/);
  for (const platform of ["linux_amd64", "linux_arm64"]) {
    assert.match(lock.run!, new RegExp(`-platform=${platform}\\b`));
  }
  assert.match(String(lock.if), /inputs\.lock_providers/);
  const inputs = infra.on.workflow_dispatch?.inputs as Record<string, unknown> | undefined;
  assert.ok(inputs?.lock_providers, "a lock_providers input");
});
