/**
 * Runs a test command (`deno run -A scripts/run_tests.ts deno test ...`) with what the test files of
 * one run share, so that `deno task test` stays under 2 minutes on 2 cores:
 * - one moto_server, its endpoint in LIFEBOAT_TEST_S3_ENDPOINT (testkit/moto.ts reads it; tests
 *   keep their buckets apart). One server instead of one per test file saves each file about 1.5 s
 *   of CPU and a second of start-up: a tenth of the suite.
 * - with `--extra-jobs=N`, N more parallel test files than there are cores (DENO_JOBS, unless
 *   already set). The functional suite takes 1: about a third of it waits on real time (retry
 *   backoffs, watch intervals, child processes), and with one file per core the cores sit idle
 *   meanwhile (measured: 124 s with 2 jobs, 107 s with 3). The reliability suite takes 0: its files
 *   are busy the whole time, and a writer racing a backup for SQLite's lock should not also race
 *   a third test file for the CPU.
 * The server is stopped when the command ends; SIGINT/SIGTERM reach the command; this exits with
 * the command's exit code.
 */
import { SHARED_S3_VAR, startOwnLocalS3 } from "../testkit/moto.ts";

if (import.meta.main) {
  const extra = /^--extra-jobs=(\d+)$/.exec(Deno.args[0] ?? "");
  const [cmd, ...args] = Deno.args.slice(extra ? 1 : 0);
  if (!cmd) {
    console.error("usage: deno run -A scripts/run_tests.ts [--extra-jobs=N] COMMAND [ARGS...]");
    Deno.exit(2);
  }
  const jobs = navigator.hardwareConcurrency + Number(extra?.[1] ?? 0);
  const s3 = await startOwnLocalS3();
  let status: Deno.CommandStatus | undefined;
  try {
    // `deno` is this very runtime, whatever PATH says.
    const child = new Deno.Command(cmd === "deno" ? Deno.execPath() : cmd, {
      args,
      env: {
        [SHARED_S3_VAR]: s3.endpoint,
        DENO_JOBS: Deno.env.get("DENO_JOBS") ?? String(jobs),
      },
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(signal, () => {
        try {
          child.kill(signal);
        } catch { /* already gone */ }
      });
    }
    status = await child.status;
  } catch (err) {
    console.error(`run_tests: cannot run ${cmd}: ${(err as Error).message}`);
    Deno.exitCode = 2;
  } finally {
    await s3.stop(); // also when the command could not be started
  }
  if (!status) Deno.exit();
  Deno.exit(status.code);
}
