/** The command line: parses arguments, builds the Config, runs one command, returns an exit code. */
import { Command, CommanderError } from "commander";
import { systemClock } from "./clock.ts";
import { backupOnce } from "./commands/backup.ts";
import { verifyDatabases } from "./commands/drill.ts";
import { listBackups, type ListFlags } from "./commands/list.ts";
import { restoreDatabase } from "./commands/restore.ts";
import { assertNotMovedAway, forEachDatabase, openTargets } from "./commands/several.ts";
import { watch } from "./commands/watch.ts";
import { type Config, type Env, type Flags, loadConfig } from "./config.ts";
import { DB_SEPARATOR, resolveDatabases } from "./databases.ts";
import { configError, EXIT_USAGE, exitCodeOf, oneLine } from "./errors.ts";
import { acquireLock, type Lock } from "./lock.ts";
import { logger, printLine, setupLogging } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { serveMetrics } from "./metrics_server.ts";
import { addSecretsFromEnv, redactLine } from "./redact.ts";
import { holdSignals, processSignals } from "./signals.ts";
import { cleanStaleTemps } from "./tempfiles.ts";
import { VERSION } from "./version.ts";

const ENV_HELP = `
Environment (flags win):
  LIFEBOAT_DB (several: comma-separated; PATH=NAME picks a database's store name; a path with
  a comma needs repeated --db), LIFEBOAT_URL, LIFEBOAT_INTERVAL (default 5m)
  LIFEBOAT_BACKUP_CONCURRENCY (default 2: databases backed up at once)
  LIFEBOAT_LOG_FORMAT=json|text, LIFEBOAT_LOG_LEVEL=debug|info|warning|error
  LIFEBOAT_APP_STOP_TIMEOUT (default 10s: then the app gets SIGKILL)
  LIFEBOAT_SHUTDOWN_TIMEOUT (default 30s), LIFEBOAT_METRICS_ADDR (e.g. :9091, serves /metrics)
  LIFEBOAT_ALLOW_EMPTY=1 (restore: start empty although the store once held backups)
  LIFEBOAT_RESTORE_CHECK=auto|quick_check|integrity_check (restore: the SQLite check after SHA-256)
  LIFEBOAT_DRILL_INTERVAL (default 24h; 0 or off: none; watch re-reads and verifies the newest backup)
  RELEASE_COMMAND (set by fly.io on release machines: watch runs the app alone, backup refuses)
  LIFEBOAT_S3_ENDPOINT, LIFEBOAT_S3_REGION, LIFEBOAT_ACCESS_KEY_ID (else AWS_ENDPOINT_URL_S3,
  AWS_REGION, AWS_ACCESS_KEY_ID), AWS_ROLE_ARN, BUCKET_NAME, LIFEBOAT_S3_* (see README)

Exit codes: 0 success, 1 the operation failed, 2 usage or configuration error.`;

type Run = (cfg: Config) => Promise<number>;

const allowEmpty = "--allow-empty";
const allowEmptyHelp =
  "start empty even when the store's marker says backups existed (env LIFEBOAT_ALLOW_EMPTY=1)";

/** Prepares logging and the store for a command, then runs it; maps every error to one line. */
async function execute(flags: Flags, command: string[], run: Run, env: Env): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(flags, env, command);
    // Symlinks resolved once, here: restore replaces the link's target, the lock is on it.
    const databases = await resolveDatabases(cfg.databases);
    cfg = { ...cfg, db: databases[0].path, databases };
  } catch (err) {
    printLine(`lifeboat: ${oneLine(err)}`);
    return exitCodeOf(err);
  }
  await setupLogging(cfg.log);
  const locks: Lock[] = [];
  try {
    for (const { path } of cfg.databases) {
      locks.push(await acquireLock(path));
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

const backupCmd: Run = async (cfg) => {
  if (cfg.releaseCommand) {
    throw configError(
      "RELEASE_COMMAND is set: this is a fly.io release machine, whose database is a throwaway " +
        "copy; a backup from it would become the newest and hide the live machine's writes",
      "Back up from the app's machine; run migrations in the app's start command, under " +
        "`lifeboat watch -- …`, after the restore",
    );
  }
  const targets = await openTargets(cfg);
  await forEachDatabase(
    targets,
    cfg.backupConcurrency,
    "backup",
    ({ db, store }) => backupOnce({ ...cfg, db }, { store, clock: systemClock }, {}),
  );
  return 0;
};

const restoreCmd: Run = async (cfg) => {
  const targets = await openTargets(cfg);
  // Every database at once: one slow store prefix does not delay the others.
  await forEachDatabase(
    targets,
    targets.length,
    "restore",
    async (t) => {
      const r = await restoreDatabase(
        { ...cfg, db: t.db },
        { store: t.store, clock: systemClock },
      );
      if (r.outcome === "fresh") await assertNotMovedAway(t, targets, cfg.allowEmpty);
    },
    "The databases that were restored stay in place, untouched; the app must not start. Fix " +
      "the cause and run restore again",
  );
  return 0;
};

const watchCmd: Run = async (cfg) => {
  const targets = await openTargets(cfg);
  const store = targets[0].store;
  const metrics = new Metrics(systemClock, cfg, cfg.databases.map((d) => d.name));
  // A release machine serves nothing: it runs the release command alone.
  const server = cfg.metricsAddr && !cfg.releaseCommand
    ? serveMetrics(cfg.metricsAddr, metrics)
    : undefined;
  try {
    return await watch(
      { ...cfg, databases: targets },
      { store, clock: systemClock, signals: processSignals, metrics },
    );
  } finally {
    await server?.close();
  }
};

const verifyCmd: Run = async (cfg) =>
  await verifyDatabases(await openTargets(cfg), cfg, systemClock);

/**
 * `list` and `verify`: they read the store only, so they take no lock (they run beside a live
 * `watch`) and need no database file; maps every error to one line.
 */
async function executeReadOnly(flags: Flags, env: Env, run: Run): Promise<number> {
  let cfg: Config;
  try {
    cfg = loadConfig(flags, env);
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
  const common = (c: Command) =>
    c.option(
      "--db <path>",
      `SQLite database file; repeat for several, PATH=NAME names its store prefix (env ` +
        `LIFEBOAT_DB, '${DB_SEPARATOR}'-separated)`,
      (v: string, prev: string[] | undefined) => [...(prev ?? []), v],
    )
      .option(
        "--url <url>",
        "store: s3://BUCKET/PREFIX, file:///DIR or a directory (env LIFEBOAT_URL)",
      )
      .exitOverride();

  common(p.command("backup").description("Back up the database once, as a new backup."))
    .action((f: Flags) => done(execute(f, [], backupCmd, env)));

  common(p.command("restore").description("Restore the newest backup unless the database exists."))
    .option("--force", "replace an existing database")
    .option(allowEmpty, allowEmptyHelp)
    .action((f: Flags) => done(execute(f, [], restoreCmd, env)));

  common(
    p.command("watch")
      .description(
        "Restore, then back up every interval (and on exit), optionally running the app.",
      )
      .usage("[options] [-- CMD [ARGS...]]"),
  )
    .option(
      "--interval <duration>",
      "time between backups, e.g. 30s, 5m, 1h (env LIFEBOAT_INTERVAL)",
    )
    .option(allowEmpty, allowEmptyHelp)
    .argument("[cmd...]", "the app to run as a child, after --")
    .passThroughOptions()
    .action((cmd: string[], f: Flags) => {
      // From here on a signal waits for watch (which forwards it) instead of ending lifeboat.
      holdSignals();
      done(execute(f, cmd, watchCmd, env));
    });

  common(
    p.command("list").description(
      "List each database's backups, newest first (read-only; restores nothing).",
    ),
  )
    .option("--limit <n>", "backups shown per database (default 20)")
    .option("--json", "print one JSON document instead of a table")
    .option("--sha256", "S3: read each listed backup's SHA-256 (one HEAD request per backup)")
    .action((f: ListFlags & Flags) => done(executeReadOnly(f, env, (cfg) => listBackups(cfg, f))));

  common(
    p.command("verify").description(
      "Read each database's newest backup back and verify it as restore would (restores nothing).",
    ),
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
      const ok = ["commander.helpDisplayed", "commander.version", "commander.help"];
      return ok.includes(err.code) ? 0 : EXIT_USAGE;
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
