/** lifeboat: keeps a SQLite database safe on containers that lose their disk. */
import { installSignalHandlers } from "./src/signals.ts";

if (import.meta.main) {
  // Before anything else (even loading the rest of lifeboat): as PID 1 a signal without a
  // handler is dropped or, mid-start, fatal to the runtime.
  installSignalHandlers();
  const { main } = await import("./src/cli.ts");
  Deno.exit(await main(Deno.args));
}
