/**
 * `deno task demo`: the main job on this machine with no AWS. A sample app writes to a WAL-mode
 * SQLite database under `lifeboat watch` with a directory store; the "container" is stopped
 * with SIGTERM, and a fresh "machine" restores the database and counts the rows.
 */
import { DatabaseSync } from "node:sqlite";
import { LIFEBOAT_CMD, ROOT } from "../testkit/cli.ts";

const base = `${ROOT}/.demo`;
await Deno.remove(base, { recursive: true }).catch(() => {});
await Deno.mkdir(`${base}/store`, { recursive: true });
const env = {
  LIFEBOAT_URL: `file://${base}/store`,
  LIFEBOAT_INTERVAL: "2s",
  LIFEBOAT_LOG_FORMAT: "text",
};
const writer = `
  import { DatabaseSync } from "node:sqlite";
  const db = new DatabaseSync(Deno.args[0]);
  db.exec("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000;" +
    "CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, at TEXT)");
  const add = db.prepare("INSERT INTO notes(at) VALUES (?)");
  setInterval(() => add.run(new Date().toISOString()), 200);
  Deno.addSignalListener("SIGTERM", () => { db.close(); Deno.exit(0); });
`;

function lifeboat(args: string[]): Deno.ChildProcess {
  return new Deno.Command(LIFEBOAT_CMD[0], {
    args: [...LIFEBOAT_CMD.slice(1), ...args],
    env,
    stdin: "null",
  }).spawn();
}

await Deno.writeTextFile(`${base}/writer.ts`, writer);
console.log(`# machine 1: lifeboat watch -- sample app, store ${env.LIFEBOAT_URL}`);
const first = lifeboat([
  "watch",
  "--db",
  `${base}/machine-1/app.db`,
  "--",
  Deno.execPath(),
  "run",
  "-A",
  `${base}/writer.ts`,
  `${base}/machine-1/app.db`,
]);
await new Promise((r) => setTimeout(r, 5500));
console.log("# stopping machine 1 (SIGTERM), as fly.io does");
try {
  first.kill("SIGTERM");
} catch {
  console.log("# machine 1 had already stopped");
}
const code = (await first.status).code;
console.log(`# machine 1 exited with code ${code}`);

console.log("# machine 2: an empty disk; lifeboat restore");
const second = await lifeboat(["restore", "--db", `${base}/machine-2/app.db`]).status;
if (!second.success) Deno.exit(second.code);

const count = (p: string) => {
  const db = new DatabaseSync(p, { readOnly: true });
  const n = (db.prepare("SELECT count(*) AS n FROM notes").get() as { n: number }).n;
  db.close();
  return n;
};
const before = count(`${base}/machine-1/app.db`);
const after = count(`${base}/machine-2/app.db`);
console.log(`# rows on machine 1 at shutdown: ${before}; rows restored on machine 2: ${after}`);
/** The backups under `dir`, at any depth (format 3 files them as backups/TIER/NAME/FILE). */
const backupsIn = (dir: string): string[] =>
  [...Deno.readDirSync(dir)].flatMap((e) =>
    e.isDirectory
      ? backupsIn(`${dir}/${e.name}`)
      : e.name.endsWith(".sqlite3")
      ? [`${dir}/${e.name}`]
      : []
  );
const backups = backupsIn(`${base}/store/backups`);
console.log(`# backups in the store: ${backups.length} (files in .demo/store/backups/*/app)`);
Deno.exit(before === after && code === 0 ? 0 : 1);
