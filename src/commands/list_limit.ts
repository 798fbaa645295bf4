/** `lifeboat list --limit`: how many backups per database it lists (its own module: settings read it). */
import { configError } from "../errors.ts";

/** Backups listed per database unless `--limit` says otherwise. */
export const DEFAULT_LIST_LIMIT = 20;
/** The most backups `--limit` may ask for. */
export const MAX_LIST_LIMIT = 10_000;
/** Parses `--limit`; throws a config error (exit 2) for anything but a whole number in range. */
export function listLimit(raw: string | undefined): number {
  if (raw === undefined) return DEFAULT_LIST_LIMIT;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < 1 || n > MAX_LIST_LIMIT) {
    throw configError(
      `--limit ${JSON.stringify(raw)} is not valid`,
      `Use a whole number from 1 to ${MAX_LIST_LIMIT}`,
    );
  }
  return n;
}
