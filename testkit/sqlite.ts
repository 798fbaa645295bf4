/** Test databases: created, written and read with node:sqlite (the same SQLite lifeboat uses). */
import { DatabaseSync } from "node:sqlite";

/** Creates a WAL-mode database at `path` with a table `t(id, body)` and `rows` rows. */
export function makeDb(path: string, rows = 100, wal = true): void {
  const db = new DatabaseSync(path);
  try {
    if (wal) db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    insertRows(db, rows);
  } finally {
    db.close();
  }
}

/** Inserts `n` rows with readable, distinct bodies in one transaction. */
export function insertRows(db: DatabaseSync, n: number, tag = "row"): void {
  const stmt = db.prepare("INSERT INTO t(body) VALUES (?)");
  db.exec("BEGIN");
  for (let i = 0; i < n; i++) stmt.run(`${tag}-${i}-${"x".repeat(50)}`);
  db.exec("COMMIT");
}

/** Appends one row to the database at `path` and returns its body. */
export function addRow(path: string, body: string): string {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA busy_timeout=5000");
    db.prepare("INSERT INTO t(body) VALUES (?)").run(body);
  } finally {
    db.close();
  }
  return body;
}

/** Returns every row body of `t`, in id order. */
export function readRows(path: string): string[] {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    return (db.prepare("SELECT body FROM t ORDER BY id").all() as { body: string }[]).map((r) =>
      r.body
    );
  } finally {
    db.close();
  }
}

/** Returns `PRAGMA integrity_check`'s verdict for the database at `path`. */
export function integrity(path: string): string {
  const db = new DatabaseSync(path, { readOnly: true });
  try {
    const rows = db.prepare("PRAGMA integrity_check").all() as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join("; ");
  } finally {
    db.close();
  }
}

/** Grows the database at `path` (table t must exist) by about `mib` MiB of random rows. */
export function growDb(path: string, mib: number): void {
  const db = new DatabaseSync(path);
  try {
    db.exec("PRAGMA busy_timeout=10000");
    const rows = Math.ceil((mib * 1024 * 1024) / 2100);
    db.exec(
      `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows})
       INSERT INTO t(body) SELECT hex(randomblob(1000)) FROM n`,
    );
  } finally {
    db.close();
  }
}
