/**
 * lifeboat's example app: a tiny HTTP service that keeps records in SQLite. It is what the
 * Dockerfile ships (as `lifeboat watch -- example-app`) and what the lifecycle test runs.
 *
 *   POST /records        body = the record's text → 201 {"id": N}, sent only after the COMMIT
 *   GET  /records/count  → 200 {"count": N}
 *   GET  /healthz        → 200 "ok" once the database answers
 *
 * Environment: PORT (default 8080), HOST (default 0.0.0.0), LIFEBOAT_DB or DB_PATH (the SQLite
 * file, default ./app.db). Permissions: the "example" set in deno.json.
 *
 * Several databases (LIFEBOAT_DB=/data/app.db,/data/audit.db, as `lifeboat watch` takes them,
 * `=NAME` suffixes ignored): the first holds the records; every other one gets a copy of each
 * record under the same id (an audit log, say), committed before the 201. So each acknowledged
 * write must come back in every database: what lifeboat's multi-database tests check.
 *
 * The database settings, and why:
 * - journal_mode=WAL: lifeboat's snapshot holds a read transaction; in WAL mode writers go on.
 * - busy_timeout=5000: wait up to 5 s for a lock instead of failing at once (SQLITE_BUSY).
 * - synchronous=NORMAL: a commit is in the WAL file, not yet fsynced, when the 201 goes out.
 *   It survives the app's exit: the final backup reads it back through SQLite on the same
 *   machine. It would not survive a power loss, but without a volume the disk does not survive
 *   a machine's stop either: durability comes from the backups, so FULL's fsync per commit
 *   would only slow each write down.
 *
 * On SIGTERM or SIGINT it stops accepting connections, finishes the requests in flight, closes
 * the database and exits 0; lifeboat then takes the final backup.
 */
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";

const port = Number(Deno.env.get("PORT") || "8080");
const hostname = Deno.env.get("HOST") || "0.0.0.0";
const paths = (Deno.env.get("LIFEBOAT_DB") || Deno.env.get("DB_PATH") || "app.db").split(",")
  .map((p) => p.trim().replace(/(.)=[A-Za-z0-9._-]+$/, "$1"));
const path = paths[0];
/** Largest record accepted, in bytes. */
const MAX_BODY = 64 * 1024;

/** Opens one database with the settings above and its `records` table. */
function open(file: string): DatabaseSync {
  Deno.mkdirSync(dirname(file), { recursive: true });
  const conn = new DatabaseSync(file);
  conn.exec("PRAGMA journal_mode=WAL");
  conn.exec("PRAGMA busy_timeout=5000");
  conn.exec("PRAGMA synchronous=NORMAL");
  conn.exec(
    "CREATE TABLE IF NOT EXISTS records(id INTEGER PRIMARY KEY, body TEXT NOT NULL, " +
      "created_at TEXT NOT NULL)",
  );
  return conn;
}

const db = open(path);
const copies = paths.slice(1).map(open);
const insert = db.prepare("INSERT INTO records(body, created_at) VALUES (?, ?)");
const copy = copies.map((c) =>
  c.prepare("INSERT OR REPLACE INTO records(id, body, created_at) VALUES (?, ?, ?)")
);
const count = db.prepare("SELECT count(*) AS n FROM records");

function json(status: number, value: unknown, headers: HeadersInit = {}): Response {
  return new Response(JSON.stringify(value) + "\n", {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

async function handle(req: Request): Promise<Response> {
  const { pathname } = new URL(req.url);
  if (pathname === "/records" && req.method === "POST") {
    const body = await req.text();
    if (body === "") return json(400, { error: "empty body: send the record's text" });
    if (new TextEncoder().encode(body).length > MAX_BODY) {
      return json(413, { error: `record larger than ${MAX_BODY} bytes` });
    }
    // One statement in autocommit mode: run() returns after the COMMIT, so the 201 follows it.
    const at = new Date().toISOString();
    const { lastInsertRowid } = insert.run(body, at);
    const id = Number(lastInsertRowid);
    for (const stmt of copy) stmt.run(id, body, at);
    return json(201, { id }, { location: `/records/${id}` });
  }
  if (pathname === "/records/count" && req.method === "GET") {
    return json(200, { count: (count.get() as { n: number }).n });
  }
  if (pathname === "/healthz" && req.method === "GET") {
    count.get();
    return new Response("ok\n");
  }
  return json(404, { error: "not found: POST /records, GET /records/count, GET /healthz" });
}

const server = Deno.serve({
  hostname,
  port,
  onListen: (a) =>
    console.log(`example app listening on http://${a.hostname}:${a.port} (${paths.join(", ")})`),
}, handle);

let stopping = false;
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(sig, async () => {
    if (stopping) return;
    stopping = true;
    console.log(`example app: ${sig}, finishing requests in flight`);
    await server.shutdown();
    db.close();
    for (const c of copies) c.close();
    Deno.exit(0);
  });
}
