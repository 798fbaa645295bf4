/**
 * `watch` in-process with slow, hanging and failing stores: the shutdown-budget warnings, the final
 * backup cut short by LIFEBOAT_SHUTDOWN_TIMEOUT, and the error when backups go stale.
 */
import assert from "node:assert/strict";
import { type Clock, systemClock } from "../src/clock.ts";
import { watch, type WatchOptions } from "../src/commands/watch.ts";
import { Metrics } from "../src/metrics.ts";
import { FileStore } from "../src/store/file.ts";
import type { BackupMeta, OpenedBackup, PutOptions, Store } from "../src/store/store.ts";
import { testClock } from "../testkit/clock.ts";
import { captureLogs } from "../testkit/logs.ts";
import { manualSignals } from "../testkit/signals.ts";
import { parseProm, promValue } from "../testkit/prometheus.ts";
import { addRow, makeDb } from "../testkit/sqlite.ts";
import { LOOSE, tempDir } from "../testkit/scene.ts";
import { storeWith } from "../testkit/backup_files.ts";

const logs = await captureLogs();

/** Resolves after `ms`; rejects with the signal's reason if it aborts first or has already. */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    // An upload may start after its shutdown deadline passed (a slow snapshot on a loaded
    // machine): without this check the "hanging" store would wait the full hour.
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      reject(signal.reason);
    }, { once: true });
  });
}

/**
 * The clock of these runs: time moves only as watch (or a slow store) sleeps, so durations and
 * intervals are what the test says, however loaded the machine. Each sleep also takes 100 ms of
 * real time (the intervals' pace with the real clock), so watch's loop does not spin.
 */
const fastClock = () => testClock(Date.now(), { realMs: 100 });

/**
 * A directory store whose uploads and downloads take `ms` longer on `clock`, or fail, or never
 * end (in real time).
 */
function storeOf(
  dir: string,
  put: "slow" | "hang" | "fail",
  ms = 0,
  clock: Clock = systemClock,
): Store {
  Deno.mkdirSync(`${dir}/store`, { recursive: true }); // a directory store must exist
  const inner = new FileStore(`${dir}/store`);
  return storeWith(inner, {
    async open(key): Promise<OpenedBackup> {
      await clock.sleep(ms);
      return inner.open(key);
    },
    async put(key: string, file: string, meta: BackupMeta, opts?: PutOptions) {
      if (put === "fail") throw new Error("S3 said no");
      if (put === "hang") await delay(3_600_000, opts?.signal);
      else await clock.sleep(ms, opts?.signal);
      await inner.put(key, file, meta, opts);
    },
  });
}

function options(dir: string, o: Partial<WatchOptions> = {}): WatchOptions {
  return {
    databases: [{ path: `${dir}/app.db`, name: "app", explicit: false }],
    machine: "test",
    force: false,
    attempts: 1,
    retryBaseMs: 10,
    interval: 100,
    command: [],
    shutdownTimeoutMs: 30_000,
    appStopTimeoutMs: 10_000,
    ...o,
  };
}

/**
 * Starts watch on a new database of `rows` rows (default 5) in a new directory, on `clock`
 * (default fastClock()), its store's uploads `put` and `ms` slower (see storeOf); returns the
 * directory, the run, its signals and its metrics. Clears the logs.
 */
async function watchScene(
  put: "slow" | "hang" | "fail",
  o: Partial<WatchOptions>,
  { rows = 5, ms = 0, clock = fastClock() }: { rows?: number; ms?: number; clock?: Clock } = {},
) {
  const dir = await tempDir();
  logs.clear();
  makeDb(`${dir}/app.db`, rows);
  const opts = options(dir, o);
  const metrics = new Metrics(clock, opts);
  const signals = manualSignals();
  const store = storeOf(dir, put, ms, clock);
  const running = watch(opts, { store, clock, signals, metrics });
  return { dir, running, signals, metrics };
}

/** Polls until `cond` holds; fails after `ms`. */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(20);
  }
}

Deno.test({
  name: "watch: a backup or restore slower than half of LIFEBOAT_SHUTDOWN_TIMEOUT warns",
  ...LOOSE,
  fn: async () => {
    // Only the store is slow (600 ms on the test clock, however loaded the machine); the final
    // backup (unchanged: a snapshot and one LIST, no upload) fits in the budget.
    const { dir, running, signals } = await watchScene("slow", { shutdownTimeoutMs: 1000 }, {
      rows: 20,
      ms: 600,
    });
    await until(() => logs.withEvent("backup_finished").length > 0, "a periodic backup");
    signals.send();
    assert.equal(await running, 0);
    const [w] = logs.withEvent("shutdown_budget");
    assert.equal(w?.level, "warning");
    assert.equal(w.properties.what, "backup");
    assert.ok(Number(w.properties.ms) > 500);
    assert.match(
      String(w.message.join("")),
      /backup took \S+, more than half of LIFEBOAT_SHUTDOWN_TIMEOUT \(1\.0s\): the final backup may be cut short/,
    );

    // A new machine: the restore moves the same bytes, so a slow one warns at start.
    logs.clear();
    const next = await tempDir();
    const again = manualSignals();
    const nextClock = fastClock();
    const second = watch(
      options(next, { shutdownTimeoutMs: 1000, interval: 3_600_000 }),
      { store: storeOf(dir, "slow", 600, nextClock), clock: nextClock, signals: again },
    );
    await until(() => logs.withEvent("watch_started").length > 0, "watch to start");
    again.send();
    assert.equal(await second, 0);
    const starts = logs.withEvent("shutdown_budget")
      .filter((w) => /^the restore/.test(String(w.properties.what)));
    assert.equal(starts.length, 1, "one warning about the restore");
    assert.equal(starts[0].level, "warning");
    await Deno.remove(next, { recursive: true });
  },
});

Deno.test({
  name:
    "watch: the final backup is bounded by LIFEBOAT_SHUTDOWN_TIMEOUT and says so when cut short",
  ...LOOSE,
  fn: async () => {
    const { dir, running, signals, metrics } = await watchScene(
      "hang",
      { shutdownTimeoutMs: 300, interval: 3_600_000 },
      { rows: 20, clock: systemClock },
    );
    await until(() => logs.withEvent("watch_started").length > 0, "watch to start");
    addRow(`${dir}/app.db`, "written before SIGTERM");
    const stoppedAt = Date.now();
    signals.send();
    assert.equal(await running, 1, "the data did not reach the store: exit 1");
    const took = Date.now() - stoppedAt;
    assert.ok(took >= 300 && took < 5_000, `bounded by the timeout (took ${took} ms)`);
    const [cut] = logs.withEvent("backup_aborted");
    assert.equal(cut?.level, "error");
    assert.equal(
      cut.message.join(""),
      "final backup cut short after 300ms (LIFEBOAT_SHUTDOWN_TIMEOUT)",
    );
    const p = parseProm(metrics.render());
    assert.equal(promValue(p, "lifeboat_backups_total", { outcome: "aborted" }), 1);
    assert.equal(promValue(p, "lifeboat_backups_total", { outcome: "uploaded" }), 0);
  },
});

Deno.test({
  name: "watch: no successful backup for more than 2 intervals is an error naming the cause",
  ...LOOSE,
  fn: async () => {
    const { dir, running, signals, metrics } = await watchScene("fail", { interval: 100 });
    // The alarm also rings while a backup is still running (see container_test.ts); these are
    // the ones raised after a backup failed.
    const afterFailure = () =>
      logs.withEvent("backup_stale").filter((r) => /\(last: /.test(r.message.join("")));
    await until(() => afterFailure().length >= 2, "two stale-backup errors");
    signals.send();
    assert.equal(await running, 1, "the final backup failed too");
    const failedBefore = (r: unknown) =>
      logs.records.slice(0, logs.records.indexOf(r as never))
        .filter((x) => x.properties.event === "backup_failed").length;
    const [first] = afterFailure();
    assert.equal(first.level, "error");
    assert.ok(failedBefore(first) >= 1, "only after a backup failed");
    assert.ok(Number(first.properties.ms) > 200, "only once 2 intervals have passed");
    assert.match(
      first.message.join(""),
      /^no successful backup for \S+, more than 2 intervals of 100ms: writes since then are at risk \(last: Error: S3 said no\)$/,
    );
    assert.ok(promValue(parseProm(metrics.render()), "lifeboat_backup_age_seconds") > 0.2);

    // With a store that works, the same run never reports stale backups (an interval well above
    // a snapshot's time, even on a loaded machine). The real clock: on the test clock the alarm's
    // own sleeps would move time while a snapshot runs.
    logs.clear();
    const ok = manualSignals();
    const fine = watch(options(dir, { interval: 1000 }), {
      store: storeOf(dir, "slow", 0),
      clock: systemClock,
      signals: ok,
    });
    await until(() => logs.withEvent("backup_unchanged").length >= 2, "two more backups");
    ok.send();
    assert.equal(await fine, 0);
    assert.deepEqual(logs.withEvent("backup_stale"), []);
  },
});

Deno.test({
  name: "#11.6 watch: the stale-backup alarm counts the time of a backup still in flight",
  ...LOOSE,
  fn: async () => {
    const { running, signals, metrics } = await watchScene("hang", {
      interval: 100,
      shutdownTimeoutMs: 300,
    });
    await until(() => logs.withEvent("backup_stale").length >= 2, "stale-backup errors");
    assert.deepEqual(logs.withEvent("backup_failed"), [], "the first backup is still running");
    const [first] = logs.withEvent("backup_stale");
    assert.equal(first.level, "error");
    assert.match(
      first.message.join(""),
      /^no successful backup for \S+, more than 2 intervals of 100ms: .* \(a backup has been running for \S+ without finishing\)$/,
    );
    assert.ok(promValue(parseProm(metrics.render()), "lifeboat_backup_age_seconds") > 0.2);
    signals.send();
    assert.equal(await running, 1, "the final backup hangs too and is cut short");
  },
});
