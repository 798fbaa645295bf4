/**
 * Backups as lifeboat 0.1 and 0.2 wrote them, into a directory store: to test that this version
 * reads every layout ever written, and what it decides when an older lifeboat ran in between (a
 * downgrade). The bytes, names and metadata files are exactly theirs.
 */
import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { MARKER_NAME } from "../src/store/keys.ts";
import { metaToRecord } from "../src/store/store.ts";

/** Where an older lifeboat put a backup: 0.1's root key, 0.2's `backups/`, 0.2's `NAME/backups/`. */
export type LegacyLayout = "root-v1" | "root-v2" | "named-v2";

/**
 * Copies the database `db` into the directory store `storeDir` as a backup of `layout` ordered
 * at `ms` (from `machine`), with its metadata file, and, as 0.2 did, its marker where none is
 * (0.1 wrote none). Resolves with the key (relative to the store).
 */
export async function writeLegacyBackup(
  storeDir: string,
  db: string,
  o: { layout: LegacyLayout; ms: number; name?: string; machine?: string; hex?: string },
): Promise<string> {
  const machine = o.machine ?? "old";
  const order = String(9_999_999_999_999 - o.ms).padStart(13, "0");
  const time = new Date(o.ms).toISOString().replaceAll(":", "-");
  const file = o.layout === "root-v1"
    ? `${order}-${time}-${machine}.sqlite3`
    : `${order}-${time}-${machine}-${o.hex ?? "0a1b2c"}.sqlite3`;
  const dir = o.layout === "root-v1"
    ? ""
    : o.layout === "root-v2"
    ? "backups/"
    : `${o.name}/backups/`;
  const key = dir + file;
  await Deno.mkdir(dirname(`${storeDir}/${key}`), { recursive: true });
  const bytes = await Deno.readFile(db);
  await Deno.writeFile(`${storeDir}/${key}`, bytes);
  const meta = {
    sha256: createHash("sha256").update(bytes).digest("hex"),
    size: bytes.length,
    pageSize: 4096,
    pageCount: Math.ceil(bytes.length / 4096),
    createdAt: new Date(o.ms).toISOString(),
    version: "0.1.0",
    machine,
  };
  await Deno.writeTextFile(`${storeDir}/${key}.json`, JSON.stringify(metaToRecord(meta)));
  if (o.layout !== "root-v1") {
    const marker = `${storeDir}/${o.layout === "named-v2" ? `${o.name}/` : ""}${MARKER_NAME}`;
    const there = await Deno.stat(marker).then(() => true, () => false);
    if (!there) {
      const text = { format: 2, createdAt: meta.createdAt, machine, version: "0.1.0" };
      await Deno.writeTextFile(marker, JSON.stringify(text) + "\n");
    }
  }
  return key;
}
