/**
 * Starting this same program again with other arguments: under `deno run` that is deno with the
 * same runtime flags (permissions, config) and script; compiled, the binary itself.
 */

/** Deno's permission names, each given to a copy of this program as `--allow-NAME` when granted. */
const PERMISSIONS = ["read", "write", "net", "env", "run", "sys", "ffi", "import"] as const;

/** The executable and arguments that run this program with `args` instead of its own. */
export interface SelfCommand {
  command: string;
  args: string[];
}

/**
 * How to run this program again with `args`: the runtime's own command line (Linux's
 * /proc/self/cmdline) without this program's arguments, so the copy gets the very same flags.
 * Where that cannot be read: deno with the permissions this process holds in full and the main
 * module. Never throws.
 */
export function selfCommand(args: readonly string[]): SelfCommand {
  const command = Deno.execPath();
  const prefix = runtimeArgs(readCmdline(), Deno.args) ?? fallbackArgs();
  return { command, args: [...prefix, ...args] };
}

/**
 * The runtime's arguments: `cmdline` (argv0 first) without argv0 and without `own`, the program's
 * arguments, at its end; undefined when `cmdline` does not end with them.
 */
export function runtimeArgs(
  cmdline: readonly string[] | undefined,
  own: readonly string[],
): string[] | undefined {
  if (!cmdline?.length || cmdline.length - 1 < own.length) return undefined;
  const tail = cmdline.slice(cmdline.length - own.length);
  if (tail.some((a, i) => a !== own[i])) return undefined;
  return cmdline.slice(1, cmdline.length - own.length);
}

/** This process's command line, or undefined where /proc cannot be read. */
function readCmdline(): string[] | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/self/cmdline");
    return text.replace(/\0$/, "").split("\0");
  } catch {
    return undefined;
  }
}

/** `run`, a flag per permission granted in full, and the main module; none for a binary. */
function fallbackArgs(): string[] {
  if (Deno.build.standalone) return [];
  const flags = PERMISSIONS.filter((name) => {
    try {
      return Deno.permissions.querySync({ name }).state === "granted";
    } catch {
      return false;
    }
  }).map((name) => `--allow-${name}`);
  return ["run", "-q", "--no-prompt", ...flags, Deno.mainModule];
}
