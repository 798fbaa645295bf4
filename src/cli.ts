/** The command line: parses arguments, builds the Config, runs one command, returns an exit code. */
import { Command, CommanderError } from "commander";
import type { ListFlags } from "./commands/list.ts";
import { type Config, type Env, type Flags, loadConfig } from "./config.ts";
import { assertDistinctNames, resolveDatabases } from "./databases.ts";
import { EXIT_USAGE, exitCodeOf, oneLine } from "./errors.ts";
import { acquireLock, type Lock } from "./lock.ts";
import { logger, printLine, setupLogging } from "./log.ts";
import { addSecretsFromEnv, redactLine } from "./redact.ts";
import { holdSignals } from "./signals.ts";
import { allSettings, type CommandName, environmentHelp, flagHelp } from "./settings.ts";
import { cleanStaleTemps } from "./tempfiles.ts";
import { VERSION } from "./version.ts";

/** The end of `lifeboat --help`: every environment variable (settings.ts), then exit codes. */
const ENV_HELP = `
${environmentHelp()}

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error.`;

/** A command, given its config: resolves with the exit code; throws what `execute` reports. */
export type Run = (cfg: Config) => Promise<number>;

/**
 * Prepares logging, the databases' locks and the store for a command, then runs it; maps every
 * error to one line. `creates`: whether the command creates a missing database (restore, watch
 * but on a release machine), so its lock may create the file (lock.ts).
 */
async function execute(
  flags: Flags,
  command: string[],
  run: Run,
  env: Env,
  creates: (cfg: Config) => boolean = () => true,
): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(flags, env, command);
    // Symlinks resolved once, here: restore replaces the link's target, the lock is on it.
    cfg = { ...cfg, databases: await resolveDatabases(cfg.databases) };
  } catch (err) {
    printLine(`lifeboat: ${oneLine(err)}`);
    return exitCodeOf(err);
  }
  await setupLogging(cfg.log);
  const locks: Lock[] = [];
  try {
    for (const { path } of cfg.databases) {
      locks.push(await acquireLock(path, { create: creates(cfg) }));
      const removed = await cleanStaleTemps(path);
      if (removed.length) {
        logger("cli").info("removed {count} leftover temporary file(s) of a crashed run", {
          event: "temps_cleaned",
          count: removed.length,
        });
      }
    }
    return await run(cfg);
  } catch (err) {
    logger("cli").error("{error}", { event: "failed", error: oneLine(err) });
    return exitCodeOf(err);
  } finally {
    for (const lock of locks) lock.release();
  }
}

// Each command's modules are loaded when it runs: `watch`, long-lived, never evaluates the store's
// or SQLite's code, which its job processes run (issue #22).
const backupCmd: Run = async (cfg) => (await import("./runs.ts")).backupRun(cfg);
const restoreCmd: Run = async (cfg) => (await import("./runs.ts")).restoreRun(cfg);
const verifyCmd: Run = async (cfg) => (await import("./runs.ts")).verifyRun(cfg);
const watchCmd: Run = async (cfg) => (await import("./run_watch.ts")).watchRun(cfg);

/**
 * `list` and `verify`: they read the store only, so they take no lock (they run beside a live
 * `watch`) and need no database file; maps every error to one line.
 */
async function executeReadOnly(flags: Flags, env: Env, run: Run): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(flags, env);
    assertDistinctNames(cfg.databases);
  } catch (err) {
    printLine(`lifeboat: ${oneLine(err)}`);
    return exitCodeOf(err);
  }
  await setupLogging(cfg.log);
  try {
    return await run(cfg);
  } catch (err) {
    logger("cli").error("{error}", { event: "failed", error: oneLine(err) });
    return exitCodeOf(err);
  }
}

/** Rewrites commander's error text as lifeboat's one-line usage error. */
function usageLine(text: string, write: (s: string) => void): void {
  const msg = text.replace(/^error:\s*/i, "").replace(/\s+/g, " ").trim().replace(/\.+$/, "");
  write(redactLine(`lifeboat: ${msg}. Run \`lifeboat --help\` for usage`) + "\n");
}

/** Builds the commander program; `done` receives the chosen command's exit code. */
function program(env: Env, done: (code: Promise<number>) => void): Command {
  const p = new Command("lifeboat")
    .description("Back up and restore a SQLite database to S3 or a directory.")
    .version(VERSION, "-V, --version")
    .enablePositionalOptions()
    .configureOutput({ outputError: usageLine })
    .addHelpText("after", ENV_HELP)
    .exitOverride();
  // Each command's flags come from settings.ts, in the table's order.
  const command = (name: CommandName, description: string) => {
    const c = p.command(name).description(description).exitOverride();
    for (const s of allSettings()) {
      if (!s.flag?.commands.includes(name)) continue;
      const syntax = s.flag.arg ? `${s.flag.name} <${s.flag.arg.toLowerCase()}>` : s.flag.name;
      if (s.flag.repeat) {
        c.option(syntax, flagHelp(s), (v: string, prev?: string[]) => [...(prev ?? []), v]);
      } else c.option(syntax, flagHelp(s));
    }
    return c;
  };

  command("backup", "Back up the database once, as a new backup.")
    .action((f: Flags) => done(execute(f, [], backupCmd, env, () => false)));

  command("restore", "Restore the newest backup unless the database exists.")
    .action((f: Flags) => done(execute(f, [], restoreCmd, env)));

  command(
    "watch",
    "Restore, then back up every interval (and on exit), optionally running the app.",
  )
    .usage("[options] [-- CMD [ARGS...]]")
    .argument("[cmd...]", "the app to run as a child, after --")
    .passThroughOptions()
    .action((cmd: string[], f: Flags) => {
      // From here on a signal waits for watch (which forwards it) instead of ending lifeboat.
      holdSignals();
      // A release machine's database is a throwaway: watch neither restores nor creates it.
      done(execute(f, cmd, watchCmd, env, (cfg) => !cfg.releaseCommand));
    });

  command("list", "List each database's backups, newest first (read-only; restores nothing).")
    .action((f: ListFlags & Flags) =>
      done(executeReadOnly(f, env, async (cfg) => (await import("./runs.ts")).listRun(cfg, f)))
    );

  command(
    "verify",
    "Read each database's newest backup back and verify it as restore would (restores nothing).",
  )
    .action((f: Flags) => done(executeReadOnly(f, env, verifyCmd)));
  return p;
}

/** Runs lifeboat with `args` (without the program name); resolves with the exit code. */
export async function main(args: string[], env: Env = Deno.env.toObject()): Promise<number> {
  addSecretsFromEnv(env);
  let result: Promise<number> | undefined;
  const p = program(env, (code) => (result = code));
  try {
    await p.parseAsync(args, { from: "user" });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, help) is exit 0; help shown because no command was given
      // (commander then exits 1, the help on stderr) is a usage error: exit 2.
      const help = ["commander.helpDisplayed", "commander.version", "commander.help"];
      return help.includes(err.code) && err.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    printLine(`lifeboat: ${oneLine(err)}`);
    return exitCodeOf(err);
  }
  if (!result) {
    p.outputHelp();
    return EXIT_USAGE;
  }
  return await result;
}
