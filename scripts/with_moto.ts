/**
 * Runs a command (the test suites) with one moto_server that all its test files share:
 * `deno run -A scripts/with_moto.ts deno test ...`. The server's endpoint goes to the command in
 * LIFEBOAT_TEST_S3_ENDPOINT (testkit/moto.ts reads it); tests keep their buckets apart. One server
 * instead of one per test file saves each file about 1.5 s of CPU and a second of start-up, which
 * on a 2-core machine is a tenth of the suite. The server is stopped when the command ends, and
 * SIGINT/SIGTERM reach the command; this exits with the command's exit code.
 */
import { SHARED_S3_VAR, startOwnLocalS3 } from "../testkit/moto.ts";

if (import.meta.main) {
  const [cmd, ...args] = Deno.args;
  if (!cmd) {
    console.error("usage: deno run -A scripts/with_moto.ts COMMAND [ARGS...]");
    Deno.exit(2);
  }
  const s3 = await startOwnLocalS3();
  // `deno` is this very runtime, whatever PATH says.
  const child = new Deno.Command(cmd === "deno" ? Deno.execPath() : cmd, {
    args,
    env: { [SHARED_S3_VAR]: s3.endpoint },
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, forward(signal));
  }
  const status = await child.status;
  await s3.stop();
  Deno.exit(status.code);
}
