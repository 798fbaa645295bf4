/**
 * `deno task docs`: writes README.md's settings tables (the flags of the CLI reference and the
 * environment variables) from src/settings.ts, then formats README.md. tests/settings_test.ts
 * fails until this has run after a change to a setting.
 */
import { fileURLToPath } from "node:url";
import { readmeWithTables } from "../src/settings.ts";

const README = fileURLToPath(new URL("../README.md", import.meta.url));

if (import.meta.main) {
  await Deno.writeTextFile(README, readmeWithTables(await Deno.readTextFile(README)));
  const fmt = await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", README] }).output();
  if (!fmt.success) {
    throw new Error(`deno fmt README.md failed: ${new TextDecoder().decode(fmt.stderr)}`);
  }
  console.log("README.md: settings tables written");
}
