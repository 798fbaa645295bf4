/** lifeboat: keeps a SQLite database safe on containers that lose their disk. */
import { JOB_ARG } from "./src/job_pipe.ts";
import { installSignalHandlers } from "./src/signals.ts";

if (import.meta.main) {
  // Before anything else (even loading the rest of lifeboat): as PID 1 a signal without a
  // handler is dropped or, mid-start, fatal to the runtime.
  installSignalHandlers();
  if (Deno.args[0] === JOB_ARG) {
    // A job process of `watch` (src/job.ts): never the CLI, never the supervisor.
    const { runJob } = await import("./src/job.ts");
    Deno.exit(await runJob());
  }
  const { main } = await import("./src/cli.ts");
  Deno.exit(await main(Deno.args));
}
