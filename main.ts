/** lifeboat: keeps a SQLite database safe on containers that lose their disk. */
import { main } from "./src/cli.ts";

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
