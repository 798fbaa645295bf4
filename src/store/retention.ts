/**
 * Retention by the store's own lifecycle rules, designed for the weakest store: lifeboat never
 * deletes. Every backup is filed under a tier prefix (keys.ts `tierAfter`: `recent`, `hourly`,
 * `daily`), so rules that see prefixes only (Tigris, R2) can thin backups by age per tier. What
 * keeps each database's newest backup alive under such rules depends on the mode:
 *
 * - `tags` (AWS): the newest backup carries no tag and the rules expire only tagged objects; once
 *   a newer backup is stored, the previous newest is tagged `lifeboat-superseded=true`.
 * - `prefix` (Tigris, R2, any custom endpoint): each verified newest backup is also copied,
 *   server-side, to `kept/NAME.sqlite3`, which no rule covers (the copy is replaced by the next
 *   newer one); tags are still set where the store has them.
 * - `none`: nothing (a directory, or a store without rules).
 *
 * Only the backup a database's data continues from (the one restored, or this process's last
 * upload) is ever superseded: a newer backup a restore had to pass over is never tagged.
 */
import { oneLine } from "../errors.ts";
import { logger } from "../log.ts";
import { isKeptKey, keptKey, sealKey } from "./keys.ts";
import type { BackupInfo, BackupMeta, Store } from "./store.ts";
import { SUPERSEDED_TAG } from "./store.ts";

const log = logger("retention");

/** How the newest backup of each database survives the store's lifecycle rules (see header). */
export type RetentionMode = "tags" | "prefix" | "none";
/** LIFEBOAT_RETENTION's values: a mode, or `auto` (AWS: tags, other S3: prefix, directory: none). */
export const RETENTION_SETTINGS = ["auto", "tags", "prefix", "none"] as const;
export type RetentionSetting = typeof RETENTION_SETTINGS[number];

/** The mode for `setting` on a store: `auto` follows the store's kind. */
export function retentionMode(
  setting: RetentionSetting,
  store: { kind: "file" } | { kind: "s3"; endpoint?: string },
): RetentionMode {
  if (setting !== "auto") return setting;
  if (store.kind === "file") return "none";
  return store.endpoint ? "prefix" : "tags";
}

/** What retention did after one backup, for the log and the metrics. */
export interface RetentionOutcome {
  /** The backup tagged superseded, if one was. */
  superseded?: string;
  /** True when the kept copy now holds the new backup. */
  kept?: boolean;
  /** Set once per process, the first time the store answered that it has no tagging. */
  taggingUnsupported?: boolean;
  /** What failed (logged already; retried after the next backup). */
  problems: string[];
}

/** What a Retention learned about the store: whether it tags, and the key each kept copy holds. */
export interface RetentionMemory {
  tagging: boolean;
  kept: [name: string, key: string][];
}

/** One process's retention: its mode, and what it learned about the store (tagging). */
export class Retention {
  /** False once the store answered NotImplemented to tagging (then it is never asked again). */
  #tagging = true;
  /** Per database, the key the kept copy is known to hold. */
  readonly #kept = new Map<string, string>();

  /** Retention in `mode` for `store`. */
  constructor(readonly mode: RetentionMode, private readonly store: Store) {}

  /** What this Retention learned about the store, to hand to another process's (see `remember`). */
  get memory(): RetentionMemory {
    return { tagging: this.#tagging, kept: [...this.#kept] };
  }

  /** Takes over what another process's Retention learned (`memory`); ignores what is malformed. */
  remember(m: RetentionMemory): void {
    if (m?.tagging === false) this.#tagging = false;
    for (const pair of Array.isArray(m?.kept) ? m.kept : []) {
      if (typeof pair?.[0] === "string" && typeof pair[1] === "string") {
        this.#kept.set(pair[0], pair[1]);
      }
    }
  }

  /** Whether the store has tagging, as far as this process knows. */
  get tagging(): boolean {
    return this.#tagging;
  }

  /**
   * After `key` (database `name`, `meta`) was stored and verified: tags `previous` superseded
   * (and its seal) when it is the backup the data continued from, and in prefix mode copies the
   * new backup to the kept copy. Never throws: a failure is logged and reported.
   */
  async afterBackup(
    name: string,
    key: string,
    meta: BackupMeta,
    previous?: BackupInfo,
  ): Promise<RetentionOutcome> {
    const out: RetentionOutcome = { problems: [] };
    if (this.mode === "none") return out;
    await Promise.all([
      previous ? this.#supersede(previous, out) : undefined,
      this.mode === "prefix" ? this.#keep(name, key, meta, out) : undefined,
    ]);
    return out;
  }

  /**
   * In prefix mode, makes sure the kept copy of `name` holds `newest` (one HeadObject per process
   * and database, and a copy when it does not): a database restored and unchanged since, or one
   * whose copy was deleted, is protected all the same. Never throws.
   */
  async ensureKept(name: string, newest: BackupInfo): Promise<RetentionOutcome> {
    const out: RetentionOutcome = { problems: [] };
    if (this.mode !== "prefix" || this.#kept.get(name) === newest.key) return out;
    try {
      const kept = await this.store.describe(keptKey(name));
      if (kept?.meta.sourceKey === newest.key) {
        this.#kept.set(name, newest.key);
        return out;
      }
      const meta = (await this.store.describe(newest.key))?.meta;
      const sha256 = meta?.sha256 ?? newest.sha256;
      if (!meta || !sha256 || meta.size === undefined) {
        throw new Error(`${newest.key} has no complete lifeboat metadata to keep`);
      }
      await this.#keep(name, newest.key, { ...meta, sha256 } as BackupMeta, out);
    } catch (err) {
      this.#problem(out, `checking the kept copy of ${name}`, err);
    }
    return out;
  }

  async #supersede(b: BackupInfo, out: RetentionOutcome): Promise<void> {
    // A kept copy is never superseded: under tag rules it would expire.
    if (!this.#tagging || isKeptKey(b.key)) return;
    const tags = { [SUPERSEDED_TAG.key]: SUPERSEDED_TAG.value };
    try {
      await Promise.all([
        this.store.tag(b.key, tags),
        b.sha256 ? this.store.tag(sealKey(b.key, b.sha256), tags) : undefined,
      ]);
      out.superseded = b.key;
    } catch (err) {
      if (isNotImplemented(err)) {
        this.#tagging = false;
        out.taggingUnsupported = true;
        const tags = this.mode === "tags";
        log[tags ? "error" : "info"](
          tags
            ? "{store} does not implement object tagging: with LIFEBOAT_RETENTION=tags no backup " +
              "will ever expire. Use LIFEBOAT_RETENTION=prefix and the prefix rules of infra/"
            : "{store} does not implement object tagging: retention goes by prefix alone, the " +
              "newest backup of each database kept under kept/",
          { event: "tagging_unsupported", store: this.store.location, mode: this.mode },
        );
        return;
      }
      this.#problem(out, `marking ${b.key} as superseded`, err);
    }
  }

  async #keep(name: string, key: string, meta: BackupMeta, out: RetentionOutcome) {
    try {
      await this.store.copy(key, keptKey(name), { ...meta, sourceKey: key });
      this.#kept.set(name, key);
      out.kept = true;
    } catch (err) {
      this.#problem(out, `copying ${key} to ${keptKey(name)}`, err);
    }
  }

  #problem(out: RetentionOutcome, what: string, err: unknown): void {
    out.problems.push(`${what}: ${oneLine(err)}`);
    log.warn("retention: {what} failed (tried again after the next backup): {error}", {
      event: "retention_failed",
      what,
      error: oneLine(err),
    });
  }
}

/** True for a store's answer that it does not implement the request (S3: 501 NotImplemented). */
function isNotImplemented(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 3; depth++) {
    const x = e as { name?: unknown; Code?: unknown; cause?: unknown };
    if (x.name === "NotImplemented" || x.Code === "NotImplemented") return true;
    e = x.cause;
  }
  return false;
}
