/** Flushing a file as it fills: the final fsync still runs, and a flush that failed in the
 * background is reported there, never lost. */
import assert from "node:assert/strict";
import { WriteBehind } from "../src/store/write_behind.ts";

/** A file handle that counts flushes and fails them when told to. */
function fakeFile(fail = false) {
  const calls = { syncData: 0, sync: 0 };
  const file = {
    syncData: () => {
      calls.syncData++;
      return fail ? Promise.reject(new Error("EIO on flush")) : Promise.resolve();
    },
    sync: () => {
      calls.sync++;
      return Promise.resolve();
    },
  } as unknown as Deno.FsFile;
  return { file, calls };
}

Deno.test("write behind: flushes every so many bytes, one at a time, then fsyncs at the end", async () => {
  const { file, calls } = fakeFile();
  const w = new WriteBehind(file, 100);
  for (let i = 0; i < 10; i++) w.wrote(60); // 600 bytes: a flush is due at most every 100
  assert.ok(calls.syncData >= 1 && calls.syncData <= 6, `flushes: ${calls.syncData}`);
  await w.done();
  assert.equal(calls.sync, 1);
});

Deno.test("write behind: a failed background flush is thrown by done, before any fsync", async () => {
  const { file, calls } = fakeFile(true);
  const w = new WriteBehind(file, 100);
  w.wrote(150);
  await assert.rejects(w.done(), /EIO on flush/);
  assert.equal(calls.sync, 0);
});
