/**
 * The end of a restore run in a job process (`job.ts`): the child downloads and verifies a backup
 * into a temporary file beside the database and asks for it to be installed (`Staged`); `watch`,
 * which holds the database's lock (`lock.ts`: a rename keeps it only in the process that holds
 * it), renames it into place and answers (`Installed`). The child's restore then goes on exactly
 * as if it had installed the file itself: same log lines, same errors.
 */
import type { RestoreDeps } from "./restore.ts";
import { relayedError, type WireError } from "../job_pipe.ts";
import { isFinal, oneLine } from "../errors.ts";
import type { RunDb } from "../store/history.ts";
import { isTempOf } from "../tempfiles.ts";

/** The child's request: install the verified file `tmp` as the database `db`. */
export interface Staged {
  kind: "staged";
  id: number;
  tmp: string;
  db: string;
}

/** How an install failed: a shown error's line, or a raw error's name and message. */
export type InstallFailure = { shown: WireError } | { name: string; message: string };

/** The parent's answer to `Staged` number `installed`, written to the child's stdin. */
export interface Installed {
  installed: number;
  error?: InstallFailure;
}

/**
 * Parent: installs `s.tmp` as `s.db` with `install` when `s.db` is one of `dbs` and `s.tmp` one of
 * its temporary files; resolves with the answer for the child, never throws.
 */
export async function installStaged(
  s: Staged,
  dbs: readonly RunDb[],
  install: (tmp: string, db: string) => Promise<void>,
): Promise<Installed> {
  try {
    if (!dbs.some((d) => d.path === s.db) || !isTempOf(s.db, s.tmp)) {
      throw new Error(`${s.tmp} is not a temporary file of a database of this run`);
    }
    await install(s.tmp, s.db);
    return { installed: s.id };
  } catch (err) {
    const error: InstallFailure = isFinal(err)
      ? { shown: { line: oneLine(err), code: err.exitCode } }
      : err instanceof Error
      ? { name: err.name, message: err.message }
      : { name: "Error", message: String(err) };
    return { installed: s.id, error };
  }
}

/** The child's side: an `install` for the restore, and where the parent's answers go. */
export interface StagingInstaller {
  install: NonNullable<RestoreDeps["install"]>;
  /** Settles the install that `m` answers; ignores an answer to none. */
  answered(m: Installed): void;
  /** Fails every install still waiting (the parent is gone). */
  gone(reason: Error): void;
}

/** Child: installs by asking the parent through `send`; each waits for its `answered` call. */
export function stagingInstaller(send: (s: Staged) => void): StagingInstaller {
  const waiting = new Map<number, { resolve(): void; reject(err: Error): void }>();
  let next = 0;
  return {
    install: (tmp, db) =>
      new Promise<void>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve, reject });
        send({ kind: "staged", id, tmp, db });
      }),
    answered(m) {
      const w = waiting.get(m.installed);
      waiting.delete(m.installed);
      if (!w) return;
      if (!m.error) return w.resolve();
      w.reject(
        "shown" in m.error
          ? relayedError(m.error.shown)
          : Object.assign(new Error(m.error.message), { name: m.error.name }),
      );
    },
    gone(reason) {
      for (const w of waiting.values()) w.reject(reason);
      waiting.clear();
    },
  };
}
