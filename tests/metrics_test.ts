/** Metrics: the Prometheus text (names, HELP/TYPE, labels, values), the backup age, and a scrape. */
import assert from "node:assert/strict";
import { loadConfig, parseListenAddr } from "../src/config.ts";
import { exitCodeOf, oneLine } from "../src/errors.ts";
import { type DbMetrics, Metrics, METRICS_CONTENT_TYPE } from "../src/metrics.ts";
import { serveMetrics } from "../src/metrics_server.ts";
import { assertOneLineError, baseEnv, runLifeboat } from "../testkit/cli.ts";
import { testClock } from "../testkit/clock.ts";
import { captureLogs } from "../testkit/logs.ts";
import { onFreePort } from "../testkit/ports.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { tempDir } from "../testkit/scene.ts";

await captureLogs(); // serveMetrics logs where it listens: keep the test output clean

/** A clock that moves only when told. */
const manualClock = () => testClock(1_764_335_131_000);

const SETTINGS = { interval: 60_000, shutdownTimeoutMs: 30_000 };
const uploaded = { outcome: "uploaded" as const, key: "k", bytes: 8192, ms: 250, sha256: "a" };

Deno.test("metrics: every family has HELP and TYPE, counters end in _total, labels are fixed", () => {
  const p = parseProm(new Metrics(manualClock(), SETTINGS, ["app"]).render());
  const families = [...p.types.keys()];
  assert.deepEqual(families.sort(), [
    "lifeboat_backup_age_seconds",
    "lifeboat_backup_interval_seconds",
    "lifeboat_backup_last_bytes",
    "lifeboat_backup_last_duration_seconds",
    "lifeboat_backup_last_success_timestamp_seconds",
    "lifeboat_backups_total",
    "lifeboat_drill_failures_total",
    "lifeboat_drill_interval_seconds",
    "lifeboat_drill_last_duration_seconds",
    "lifeboat_drill_last_info",
    "lifeboat_drill_last_success_timestamp_seconds",
    "lifeboat_foreign_writer",
    "lifeboat_foreign_writer_last_timestamp_seconds",
    "lifeboat_keys_ignored_total",
    "lifeboat_newest_backup_future_seconds",
    "lifeboat_restore_bypassed_backups",
    "lifeboat_restore_bytes",
    "lifeboat_restore_duration_seconds",
    "lifeboat_restore_outcome",
    "lifeboat_retention_failures_total",
    "lifeboat_shutdown_timeout_seconds",
    "lifeboat_store_tagging_unsupported",
  ]);
  for (const name of families) {
    assert.ok(p.helps.get(name)!.length > 10, `${name} has a HELP text`);
    assert.equal(p.types.get(name), name.endsWith("_total") ? "counter" : "gauge", name);
    assert.ok(p.samples.some((s) => s.name === name), `${name} has a sample before any event`);
  }
  // Every label value exists from the start (at 0), so rate() and alerts see no gaps. A lone
  // database's samples carry its name too: one shape for one database or several.
  const outcomes = (name: string) => p.samples.filter((s) => s.name === name).map((s) => s.labels);
  assert.deepEqual(outcomes("lifeboat_backups_total"), [
    { db: "app", outcome: "uploaded" },
    { db: "app", outcome: "unchanged" },
    { db: "app", outcome: "skipped" },
    { db: "app", outcome: "failed" },
    { db: "app", outcome: "aborted" },
  ]);
  assert.ok(p.samples.every((s) => s.labels.db === "app"), "every sample carries db");
  assert.deepEqual(outcomes("lifeboat_drill_failures_total").map((l) => l.reason), [
    "damaged",
    "missing",
    "unreachable",
    "local",
  ]);
  assert.deepEqual(outcomes("lifeboat_drill_last_info"), [{ db: "app", key: "", outcome: "none" }]);
  assert.deepEqual(outcomes("lifeboat_restore_outcome").map((l) => l.outcome), [
    "restored",
    "fresh",
    "exists",
    "failed",
  ]);
  assert.equal(promValue(p, "lifeboat_backup_interval_seconds"), 60);
  assert.equal(promValue(p, "lifeboat_shutdown_timeout_seconds"), 30);
  assert.equal(promValue(p, "lifeboat_backup_last_success_timestamp_seconds"), 0);
  assert.equal(promValue(p, "lifeboat_drill_last_success_timestamp_seconds"), 0);
  assert.equal(promValue(p, "lifeboat_drill_interval_seconds"), 0, "drills off unless set");
});

Deno.test("metrics: restore and backups are recorded; values are in seconds and bytes", () => {
  const clock = manualClock();
  const registry = new Metrics(clock, SETTINGS, ["app"]);
  const m = registry.of("app");
  m.restored({ outcome: "restored", key: "k0", bytes: 4096, sha256: "a", ms: 1500 });
  clock.advance(60_000);
  m.backedUp(uploaded);
  const at = clock.now();
  clock.advance(60_000);
  m.backedUp({ ...uploaded, outcome: "unchanged", ms: 40 });
  clock.advance(60_000);
  m.notBackedUp("failed", "S3 said no");
  m.notBackedUp("aborted", "SIGTERM received");
  clock.advance(5_000);
  const p = parseProm(registry.render());
  assert.equal(promValue(p, "lifeboat_restore_outcome", { outcome: "restored" }), 1);
  assert.equal(promValue(p, "lifeboat_restore_outcome", { outcome: "fresh" }), 0);
  assert.equal(promValue(p, "lifeboat_restore_duration_seconds"), 1.5);
  assert.equal(promValue(p, "lifeboat_restore_bytes"), 4096);
  for (const [outcome, n] of [["uploaded", 1], ["unchanged", 1], ["skipped", 0], ["failed", 1]]) {
    assert.equal(
      promValue(p, "lifeboat_backups_total", { outcome: `${outcome}` }),
      n,
      `${outcome}`,
    );
  }
  assert.equal(promValue(p, "lifeboat_backup_last_duration_seconds"), 0.04);
  assert.equal(promValue(p, "lifeboat_backup_last_bytes"), 8192);
  assert.equal(
    promValue(p, "lifeboat_backup_last_success_timestamp_seconds"),
    (at + 60_000) / 1000,
  );
  assert.equal(promValue(p, "lifeboat_backup_age_seconds"), 65, "since the unchanged backup");
  assert.equal(m.lastProblem, "SIGTERM received");
});

Deno.test("metrics: the backup age restarts on a restore that matches the store, not otherwise", () => {
  const age = (setup: (m: DbMetrics, c: ReturnType<typeof manualClock>) => void) => {
    const clock = manualClock();
    const m = new Metrics(clock, SETTINGS).of("app");
    clock.advance(10_000);
    setup(m, clock);
    clock.advance(1_000);
    return m.backupAgeMs();
  };
  assert.equal(age(() => {}), 11_000, "counts from lifeboat's start");
  assert.equal(age((m) => m.restored({ outcome: "restored", bytes: 1, ms: 10 })), 1_000);
  assert.equal(age((m) => m.restored({ outcome: "fresh", ms: 10 })), 1_000, "nothing to lose");
  assert.equal(age((m) => m.restored({ outcome: "exists", ms: 0 })), 11_000, "not known safe");
  assert.equal(age((m) => m.restored({ outcome: "failed", ms: 10 })), 11_000);
  assert.equal(age((m) => m.notBackedUp("skipped", "no database")), 11_000);
  assert.equal(age((m) => m.backedUp(uploaded)), 1_000);
});

Deno.test("metrics: GET /metrics over HTTP; other paths 404, other methods 405", async () => {
  const clock = manualClock();
  const m = new Metrics(clock, SETTINGS, ["app"]);
  m.of("app").restored({ outcome: "fresh", ms: 20 });
  const { port, server } = await onFreePort((port) => ({
    port,
    server: serveMetrics({ hostname: "127.0.0.1", port }, m),
  }));
  try {
    assert.deepEqual({ ...server.addr }, { transport: "tcp", hostname: "127.0.0.1", port });
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("content-type"), METRICS_CONTENT_TYPE);
    const p = parseProm(await res.text());
    assert.equal(promValue(p, "lifeboat_restore_outcome", { outcome: "fresh" }), 1);
    clock.advance(42_000);
    const again = parseProm(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    assert.equal(promValue(again, "lifeboat_backup_age_seconds"), 42, "computed at scrape time");
    const other = await fetch(`http://127.0.0.1:${port}/`);
    await other.body?.cancel();
    assert.equal(other.status, 404);
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" });
    await post.body?.cancel();
    assert.equal(post.status, 405);
  } finally {
    await server.close();
  }
});

Deno.test("metrics: ':PORT' listens on every interface; a port in use is one clear error (exit 1)", async () => {
  const m = new Metrics(manualClock(), SETTINGS);
  const { port, server } = await onFreePort((port) => ({
    port,
    server: serveMetrics({ hostname: "", port }, m),
  }));
  try {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    await res.body?.cancel();
    assert.equal(res.status, 200);
    assert.throws(
      () => serveMetrics({ hostname: "127.0.0.1", port }, m),
      (e) =>
        exitCodeOf(e) === 1 &&
        /cannot serve metrics on 127\.0\.0\.1:\d+ \(LIFEBOAT_METRICS_ADDR\): .*in use/i.test(
          oneLine(e),
        ),
    );
  } finally {
    await server.close();
  }
});

Deno.test("config: LIFEBOAT_METRICS_ADDR forms; anything else is a config error (exit 2)", () => {
  assert.deepEqual(parseListenAddr(":9091"), { hostname: "", port: 9091 });
  assert.deepEqual(parseListenAddr("0.0.0.0:9090"), { hostname: "0.0.0.0", port: 9090 });
  assert.deepEqual(parseListenAddr("127.0.0.1:9091"), { hostname: "127.0.0.1", port: 9091 });
  assert.deepEqual(parseListenAddr("[::1]:9091"), { hostname: "::1", port: 9091 });
  assert.deepEqual(parseListenAddr("fly-local-6pn:9091"), {
    hostname: "fly-local-6pn",
    port: 9091,
  });
  for (const bad of ["9091", ":0", ":65536", "::1:9091", "http://x:9091", "host:", ":port", ""]) {
    assert.throws(
      () => parseListenAddr(bad),
      (e) =>
        exitCodeOf(e) === 2 && /LIFEBOAT_METRICS_ADDR .* is not a listen address/.test(oneLine(e)),
      bad,
    );
  }
  const env = { LIFEBOAT_DB: "/data/app.db", LIFEBOAT_URL: "s3://bucket-a/p" };
  assert.equal(loadConfig({}, env).metricsAddr, undefined, "no endpoint unless asked");
  assert.deepEqual(loadConfig({}, { ...env, LIFEBOAT_METRICS_ADDR: ":9091" }).metricsAddr, {
    hostname: "",
    port: 9091,
  });
});

Deno.test("cli: a bad LIFEBOAT_METRICS_ADDR stops watch with one line and exit 2", async () => {
  const dir = await tempDir();
  const r = await runLifeboat(
    ["watch", "--db", `${dir}/app.db`, "--url", `${dir}/store`],
    baseEnv({ LIFEBOAT_METRICS_ADDR: "9091" }),
  );
  assertOneLineError(r, 2, /^lifeboat: LIFEBOAT_METRICS_ADDR "9091" is not a listen address/);
});
