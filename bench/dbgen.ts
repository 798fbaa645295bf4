/**
 * Test databases for the benchmarks: WAL-mode SQLite files of a given size holding an app's
 * realistic rows (users, orders with JSON items, an event log, secondary indexes). Generated once
 * into bench/.data/ and reused; `deno run -A bench/dbgen.ts 10 100 1024` makes them ahead of time.
 */
import { DatabaseSync } from "node:sqlite";
import { DATA, MiB } from "./lib.ts";
import { seededRandom } from "../testkit/random.ts";

const SCHEMA = `
CREATE TABLE users(
  id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
  plan TEXT NOT NULL, created_at INTEGER NOT NULL, settings TEXT NOT NULL);
CREATE TABLE orders(
  id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id),
  created_at INTEGER NOT NULL, status TEXT NOT NULL, total_cents INTEGER NOT NULL,
  items TEXT NOT NULL);
CREATE INDEX orders_by_user ON orders(user_id, created_at);
CREATE TABLE events(
  id INTEGER PRIMARY KEY, user_id INTEGER, at INTEGER NOT NULL, kind TEXT NOT NULL,
  payload TEXT NOT NULL);
CREATE INDEX events_by_time ON events(at);
`;

const WORDS = (
  "alpha bravo delta harbor lantern meadow orbit pepper quartz river saddle timber velvet " +
  "window yellow zephyr amber basil cedar dune ember fjord garnet hazel iris jasper kelp " +
  "linen maple nectar olive pearl quill rust sage thistle umber violet willow"
).split(" ");
const STATUS = ["pending", "paid", "shipped", "delivered", "refunded"];
const KINDS = ["login", "view", "search", "add_to_cart", "checkout", "logout"];
const PLANS = ["free", "pro", "team"];

/** Returns the path of the generated database of `sizeMiB`, generating it first if missing. */
export async function ensureDb(sizeMiB: number): Promise<string> {
  const path = `${DATA}/db-v1-${sizeMiB}MiB.sqlite3`;
  try {
    await Deno.stat(path);
    return path;
  } catch { /* generate below */ }
  await Deno.mkdir(DATA, { recursive: true });
  const tmp = `${path}.generating`;
  for (const s of ["", "-wal", "-shm"]) await Deno.remove(tmp + s).catch(() => {});
  const t0 = performance.now();
  generate(tmp, sizeMiB * MiB);
  await Deno.rename(tmp, path);
  console.error(
    `bench: generated ${path} in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  return path;
}

/** Fills a new WAL-mode database at `path` with app-like rows until it reaches `bytes`. */
function generate(path: string, bytes: number): void {
  const db = new DatabaseSync(path);
  const rnd = seededRandom(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
  const words = (n: number) => Array.from({ length: n }, () => pick(WORDS)).join(" ");
  try {
    db.exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;");
    db.exec(SCHEMA);
    const addUser = db.prepare(
      "INSERT INTO users(email, name, plan, created_at, settings) VALUES (?, ?, ?, ?, ?)",
    );
    const addOrder = db.prepare(
      "INSERT INTO orders(user_id, created_at, status, total_cents, items) VALUES (?, ?, ?, ?, ?)",
    );
    const addEvent = db.prepare(
      "INSERT INTO events(user_id, at, kind, payload) VALUES (?, ?, ?, ?)",
    );
    const pageSize = Number(
      (db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size,
    );
    const pages = db.prepare("PRAGMA page_count");
    let user = 0;
    let at = Date.UTC(2025, 0, 1);
    while (Number((pages.get() as { page_count: number }).page_count) * pageSize < bytes) {
      db.exec("BEGIN");
      for (let b = 0; b < 500; b++) {
        user++;
        const name = `${pick(WORDS)} ${pick(WORDS)}`;
        addUser.run(
          `user${user}@${pick(WORDS)}.example`,
          name,
          pick(PLANS),
          at,
          JSON.stringify({ theme: pick(["dark", "light"]), tz: "Europe/Paris", bio: words(8) }),
        );
        for (let o = 0; o < 3; o++) {
          const items = Array.from({ length: 1 + Math.floor(rnd() * 4) }, () => ({
            sku: `SKU-${Math.floor(rnd() * 1e6)}`,
            qty: 1 + Math.floor(rnd() * 3),
            title: words(3),
          }));
          addOrder.run(user, at, pick(STATUS), Math.floor(rnd() * 50_000), JSON.stringify(items));
        }
        for (let e = 0; e < 12; e++) {
          at += Math.floor(rnd() * 2000);
          addEvent.run(
            user - Math.floor(rnd() * Math.min(user, 100)),
            at,
            pick(KINDS),
            JSON.stringify({
              path: `/${pick(WORDS)}/${pick(WORDS)}`,
              q: words(2),
              ms: rnd() * 900,
            }),
          );
        }
      }
      db.exec("COMMIT");
    }
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } finally {
    db.close();
  }
}

if (import.meta.main) {
  for (const arg of Deno.args.length ? Deno.args : ["10", "100", "1024"]) {
    console.log(await ensureDb(Number(arg)));
  }
}
