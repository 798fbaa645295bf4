/** `deno compile` command lines, compared by their flags (workflows, Dockerfile, deno task). */
import assert from "node:assert/strict";

/**
 * The flags of a `deno compile` command line, without its output, target and entry point (the
 * last non-flag word). Fails the calling test when the line is not a `deno compile`.
 */
export function compileFlags(command: string): string[] {
  const words = command.trim().split(/\s+/).map((w) => w.replace(/^"|"$/g, ""));
  assert.deepEqual(words.slice(0, 2), ["deno", "compile"], command);
  const flags: string[] = [];
  for (let i = 2; i < words.length; i++) {
    if (words[i] === "-o" || words[i] === "--output" || words[i] === "--target") i++;
    else if (i !== words.length - 1 || words[i].startsWith("-")) flags.push(words[i]);
  }
  return flags;
}

/** The entry point of a `deno compile` command line: its last word (never fails). */
export function compileEntry(command: string): string {
  return command.trim().split(/\s+/).at(-1)!.replace(/^"|"$/g, "");
}

/** The value of `-o`/`--output` in a `deno compile` command line; undefined without one. */
export function compileOutput(command: string): string | undefined {
  const words = command.trim().split(/\s+/).map((w) => w.replace(/^"|"$/g, ""));
  const i = words.findIndex((w) => w === "-o" || w === "--output");
  return i < 0 ? undefined : words[i + 1];
}

/** The permissions lifeboat's binary gets: explicit, stable flags (no experimental `-P` set). */
export const LIFEBOAT_ALLOW = [
  "--allow-read",
  "--allow-write",
  "--allow-net",
  "--allow-env",
  "--allow-run",
  "--allow-sys",
];

/**
 * Fails the calling test unless `flags` grant exactly `allow` with explicit `--allow-*` flags:
 * no permission set from the config file (experimental in Deno 2), no -A.
 */
export function assertExplicitPermissions(flags: string[], allow: string[], what: string): void {
  assert.ok(
    !flags.some((f) => /^(-P|--permission-set)\b/.test(f)),
    `${what}: no experimental permission set`,
  );
  assert.ok(!flags.some((f) => /^(-A|--allow-all)$/.test(f)), `${what}: not -A`);
  assert.deepEqual(flags.filter((f) => f.startsWith("--allow-")), allow, what);
}
