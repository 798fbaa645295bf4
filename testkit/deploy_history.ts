/**
 * The deploy-history walk (issue #20): a seeded random sequence of what happens to a real app
 * over its life — databases added, removed, renamed; configs rolled back; lifeboat downgraded to
 * 0.1 or 0.2 for a while (simulated by writing their layouts exactly as they did); objects deleted
 * by hand or by a prefix lifecycle rule; writes between boots; fresh machines — against one
 * directory store, in-process (restoreAll and backupOnce, as `watch` runs them).
 *
 * After every boot it checks the one property that matters: each database holds the data of the
 * newest backup the store has of it, or the restore refused with exit 1 and a hint — never an
 * empty start or older data while any layout holds a newer backup of it. A refusal before any
 * step that can justify one (a downgrade's root backup, a hand deletion, a rename, a lone new
 * database beside others) is a failure too, so refusing everything cannot pass. A failure names
 * the seed and the steps.
 */
import { restoreAll } from "../src/commands/restore.ts";
import { backupOnce, type BackupState } from "../src/commands/backup.ts";
import { ShownError } from "../src/errors.ts";
import { FileStore } from "../src/store/file.ts";
import { isKeptKey, MARKER_NAME, parseKey } from "../src/store/keys.ts";
import { ManifestKeeper } from "../src/store/manifest_keeper.ts";
import { Retention } from "../src/store/retention.ts";
import { testClock } from "./clock.ts";
import { writeLegacyBackup } from "./legacy.ts";
import { seededRandom } from "./random.ts";
import { addRow, makeDb, readRows } from "./sqlite.ts";

/** The databases an app may have, by file (the data's identity: a rename keeps the file). */
const FILES = ["primary", "cache", "queue", "cable"] as const;
type File = typeof FILES[number];

/** One database of a config: its file, and the name given to it (none: derived, the file's). */
interface Entry {
  file: File;
  name?: string;
}

/** What a walk found: its steps, and how often the rules refused (each with its reason). */
export interface WalkReport {
  steps: string[];
  boots: number;
  refusals: string[];
}

const MINUTE = 60_000;

/** A file's newest backup: its key, its order time and the last row it holds. */
interface Newest {
  key: string;
  value: string;
  ms: number;
}

/**
 * Walks `steps` steps from `seed` in directory `root`; in prefix retention mode when `prefix`.
 * Resolves with the report; throws (naming the seed and every step so far) when the property
 * fails.
 */
export async function deployHistoryWalk(
  seed: number,
  steps: number,
  root: string,
  prefix = seed % 2 === 0,
): Promise<WalkReport> {
  const random = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
  const chance = (p: number) => random() < p;
  const clock = testClock(Date.UTC(2026, 0, 1));
  const disk = `${root}/data`;
  const storeDir = `${root}/store`;
  await Deno.mkdir(disk, { recursive: true });
  await Deno.mkdir(storeDir, { recursive: true });
  const store = new FileStore(storeDir);
  const retention = new Retention(prefix ? "prefix" : "none", store);
  const report: WalkReport = { steps: [], boots: 0, refusals: [] };
  /** Which file each backup object (key) of the store holds data of. */
  const owner = new Map<string, File>();
  let config: Entry[] = [{ file: "primary" }];
  let previous = config;
  let counter = 0;
  let justified = false;
  let states = new Map<File, BackupState>();
  const pathOf = (f: File) => `${disk}/${f}.sqlite3`;
  const nameOf = (e: Entry) => e.name ?? e.file;
  const fail = (what: string): never => {
    throw new Error(
      `deploy history, seed ${seed} (prefix retention: ${prefix}): ${what}\nsteps:\n  ` +
        report.steps.join("\n  "),
    );
  };
  const step = (s: string) => report.steps.push(`${report.steps.length + 1}. ${s}`);

  for (let n = 0; n < steps; n++) {
    clock.advance(5 * MINUTE + Math.floor(random() * 120 * MINUTE));
    // 1. What changes before this boot.
    const r = random();
    if (r < 0.12) {
      const unused = FILES.filter((f) => !config.some((e) => e.file === f));
      if (unused.length) {
        previous = config;
        config = [...config, { file: pick(unused) }];
        step(`add ${config.at(-1)!.file}`);
      }
    } else if (r < 0.2 && config.length > 1) {
      previous = config;
      const gone = pick(config);
      config = config.filter((e) => e !== gone);
      step(`remove ${gone.file}`);
    } else if (r < 0.26) {
      previous = config;
      const e = pick(config);
      config = config.map((x) => x === e ? { ...x, name: `${x.file}-v${n}` } : x);
      justified = true; // its backups are under its old name: a refusal is the right answer
      step(`rename ${e.file} to ${e.file}-v${n}`);
    } else if (r < 0.34) {
      [config, previous] = [previous, config];
      step(`roll the config back to ${describe(config)}`);
    } else if (r < 0.38) {
      previous = config;
      config = FILES.slice(0, 3).map((file) => ({ file }));
      step("deploy three databases");
    } else if (r < 0.42) {
      previous = config;
      config = [{ file: pick(FILES), ...(chance(0.3) ? { name: `solo-${n}` } : {}) }];
      step(`deploy one database: ${describe(config)}`);
    }
    if (chance(0.08)) {
      await deleteByHand();
      justified = true;
    }
    const fresh = chance(0.5);
    if (fresh) {
      await Deno.remove(disk, { recursive: true });
      await Deno.mkdir(disk);
      states = new Map();
    }

    // 2. A downgrade: lifeboat 0.1 or 0.2 runs this config on a machine that kept its disk.
    if (!fresh && chance(0.1) && config.every((e) => exists(pathOf(e.file)))) {
      await legacyBackups();
      justified = true;
      continue;
    }

    // 3. Boot: restore every database, then check.
    report.boots++;
    const before = new Map(config.map((e) => [e.file, exists(pathOf(e.file))]));
    const expected = await newestByFile();
    const lone = config.length === 1;
    const others = [...expected.keys()].some((f) => !config.some((e) => e.file === f));
    const loneNew = lone && !expected.has(config[0].file) && others;
    try {
      const dbs = config.map((e) => ({
        path: pathOf(e.file),
        name: nameOf(e),
        explicit: e.name !== undefined,
      }));
      await restoreAll(dbs, { force: false, attempts: 1, retryBaseMs: 1, machine: "m" }, {
        store,
        clock,
      });
    } catch (err) {
      const why = err instanceof ShownError ? err.message : String(err);
      if (!(err instanceof ShownError) || err.exitCode !== 1 || !err.hint) {
        fail(`restore failed without a one-line hint: ${why}`);
      }
      if (!justified && !loneNew) fail(`restore refused with nothing to justify it: ${why}`);
      report.refusals.push(why);
      step(`boot ${describe(config)}${fresh ? " on a fresh machine" : ""}: refused`);
      if (chance(0.25)) continue; // nobody acts on it before the next deploy
      await followTheHint(expected, before);
      continue;
    }
    checkBoot(before, expected);
    step(`boot ${describe(config)}${fresh ? " on a fresh machine" : ""}: restored`);
    await writeAndBackUp();
  }
  return report;

  /** Each database of the config holds what the store's newest backup of it holds. */
  function checkBoot(before: Map<File, boolean>, expected: Map<File, Newest>): void {
    for (const e of config) {
      if (before.get(e.file)) continue; // kept its disk: restore skipped, its own data stands
      const want = expected.get(e.file);
      const got = exists(pathOf(e.file)) ? readRows(pathOf(e.file)).at(-1) : undefined;
      if (got !== want?.value) {
        fail(
          `${e.file} (as ${nameOf(e)}) holds ${got ?? "nothing"} after the boot, but the ` +
            `store's newest backup of it, ${want?.key ?? "(none)"}, holds ${want?.value ?? "—"}`,
        );
      }
    }
  }

  /**
   * What a person does with a refusal, knowing their data (`lifeboat list` shows it): restore
   * each database that is not on disk from its newest backup with `--from`, or start it empty
   * with `--allow-empty` when the store has none of it; then every database is checked as after
   * a boot (`before`: which were on disk before it), and the app runs.
   */
  async function followTheHint(
    expected: Map<File, Newest>,
    before: Map<File, boolean>,
  ): Promise<void> {
    for (const e of config) {
      if (exists(pathOf(e.file))) continue; // there, or restored by the boot that refused

      const want = expected.get(e.file);
      const db = { path: pathOf(e.file), name: nameOf(e), explicit: e.name !== undefined };
      const o = { force: false, attempts: 1, retryBaseMs: 1, machine: "m" };
      await restoreAll([db], want ? { ...o, from: want.key } : { ...o, allowEmpty: true }, {
        store,
        clock,
      }).catch((err) => fail(`following the hint for ${e.file} failed: ${err}`));
      step(`restore ${nameOf(e)} ${want ? `--from ${want.key}` : "--allow-empty"}`);
    }
    checkBoot(before, expected);
    await writeAndBackUp();
  }

  /** The app writes; the backups run (or the machine dies before they do). */
  async function writeAndBackUp(): Promise<void> {
    for (const e of config) {
      if (!exists(pathOf(e.file))) makeDb(pathOf(e.file), 0);
      for (let w = Math.floor(random() * 3); w >= 0; w--) addRow(pathOf(e.file), `w${++counter}`);
    }
    if (chance(0.85)) {
      const manifest = new ManifestKeeper(store, "m", () => clock.now());
      for (const e of config) {
        const state = states.get(e.file) ?? {};
        states.set(e.file, state);
        const r = await backupOnce(
          { db: pathOf(e.file), name: nameOf(e), machine: "m" },
          { store, clock, retention, manifest },
          state,
        );
        if (r.key) owner.set(r.key, e.file);
      }
      step("writes, backed up");
    } else step("writes, not backed up (the machine died)");
  }

  /** Each file's newest backup in the store (by order time), with the last row it holds. */
  async function newestByFile(): Promise<Map<File, Newest>> {
    const out = new Map<File, Newest>();
    for (const key of await storeKeys()) {
      const path = `${storeDir}/${key}`;
      let file = owner.get(key), ms = parseKey(key)?.ms;
      if (isKeptKey(key)) {
        const source = JSON.parse(await Deno.readTextFile(`${path}.json`))["source-key"];
        file = owner.get(source);
        ms = parseKey(source)?.ms;
      }
      if (!file || ms === undefined) continue;
      const best = out.get(file);
      if (!best || ms > best.ms) out.set(file, { key, value: readRows(path).at(-1)!, ms });
    }
    return out;
  }

  /** Every backup object and kept copy in the store, as keys. */
  async function storeKeys(): Promise<string[]> {
    const keys: string[] = [];
    for await (const f of walk(storeDir, "")) {
      if (parseKey(f) || isKeptKey(f)) keys.push(f);
    }
    return keys;
  }

  /** Deletes by hand: one database's newest backup, the manifest, or all of backups/ (a rule). */
  async function deleteByHand(): Promise<void> {
    const what = random();
    if (what < 0.4) {
      const newest = [...(await newestByFile()).values()];
      if (newest.length === 0) return;
      const { key } = pick(newest);
      await Deno.remove(`${storeDir}/${key}`);
      await Deno.remove(`${storeDir}/${key}.json`);
      step(`delete ${key} by hand`);
    } else if (what < 0.7) {
      await Deno.remove(`${storeDir}/${MARKER_NAME}`).catch(() => {});
      step("delete the manifest by hand");
    } else {
      await Deno.remove(`${storeDir}/backups`, { recursive: true }).catch(() => {});
      step("a prefix rule expires everything under backups/");
    }
  }

  /** lifeboat 0.1 (one database) or 0.2 backs up this config, in their layouts. */
  async function legacyBackups(): Promise<void> {
    const alone = config.length === 1 && !config[0].name;
    const v01 = alone && chance(0.5);
    for (const e of config) {
      for (let w = Math.floor(random() * 2); w >= 0; w--) addRow(pathOf(e.file), `w${++counter}`);
      const key = await writeLegacyBackup(storeDir, pathOf(e.file), {
        layout: v01 ? "root-v1" : alone ? "root-v2" : "named-v2",
        name: nameOf(e),
        ms: clock.now(),
        hex: hex(),
      });
      owner.set(key, e.file);
      clock.advance(1);
    }
    step(`lifeboat ${v01 ? "0.1" : "0.2"} runs ${describe(config)} and backs it up`);
  }

  function hex(): string {
    return Math.floor(random() * 0xffffff).toString(16).padStart(6, "0");
  }
}

function describe(config: Entry[]): string {
  return config.map((e) => e.name ? `${e.file}=${e.name}` : e.file).join(",");
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).size > 0;
  } catch {
    return false;
  }
}

/** Every file under `dir`, as paths relative to it. */
async function* walk(dir: string, rel: string): AsyncGenerator<string> {
  for await (const e of Deno.readDir(`${dir}/${rel}`)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory) yield* walk(dir, path);
    else yield path;
  }
}
