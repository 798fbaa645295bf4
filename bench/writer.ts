/**
 * The app's concurrent writer for P4: another process committing small transactions (one event
 * row and one user update) at a steady pace until its stdin closes, then printing every commit's
 * start time (epoch ms) and latency (ms) as JSON. Usage: `writer.ts DB [PERIOD_MS]`.
 * BENCH_WRITER_SYNC sets PRAGMA synchronous (default NORMAL, the usual WAL setting).
 */
import { DatabaseSync } from "node:sqlite";

/** One commit: when it started (epoch ms) and how long BEGIN…COMMIT took (ms). */
export type Sample = [at: number, ms: number];

/** Commits one small transaction every `periodMs` on `path` until `stop` aborts. */
export async function writeUntil(
  path: string,
  periodMs: number,
  stop: AbortSignal,
): Promise<Sample[]> {
  const db = new DatabaseSync(path);
  const samples: Sample[] = [];
  try {
    db.exec("PRAGMA busy_timeout=10000");
    db.exec(`PRAGMA synchronous=${Deno.env.get("BENCH_WRITER_SYNC") ?? "NORMAL"}`);
    const insert = db.prepare(
      "INSERT INTO events(user_id, at, kind, payload) VALUES (?, ?, 'bench', ?)",
    );
    const touch = db.prepare("UPDATE users SET created_at = ? WHERE id = ?");
    const payload = JSON.stringify({ path: "/bench/write", q: "x".repeat(80) });
    const origin = performance.now();
    for (let i = 0; !stop.aborted; i++) {
      const wait = origin + i * periodMs - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      else if (i % 50 === 0) await new Promise((r) => setTimeout(r, 0)); // let stdin be read
      const at = Date.now();
      const t0 = performance.now();
      db.exec("BEGIN IMMEDIATE");
      insert.run(i % 1000 + 1, at, payload);
      touch.run(at, i % 1000 + 1);
      db.exec("COMMIT");
      samples.push([at, performance.now() - t0]);
    }
  } finally {
    db.close();
  }
  return samples;
}

if (import.meta.main) {
  const [db, period] = Deno.args;
  const stop = new AbortController();
  (async () => {
    for await (const _ of Deno.stdin.readable) { /* until EOF */ }
    stop.abort();
  })();
  console.error("writer: started");
  const samples = await writeUntil(db, Number(period ?? 5), stop.signal);
  console.log(JSON.stringify(samples.map(([a, m]) => [a, Math.round(m * 1000) / 1000])));
}
