/**
 * The layering rules of ARCHITECTURE.md, checked on the import graph of main.ts and src/: every
 * import (static, `export … from`, dynamic, and worker URLs) points to its own layer or a lower
 * one; commands hold no S3 or SQLite details; the AWS SDK loads only when an S3 store is used.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

/** The layers, top first: a file may import its own layer and those below it, never above. */
const LAYERS: { name: string; holds: (path: string) => boolean }[] = [
  { name: "entry", holds: (p) => p === "main.ts" },
  {
    name: "cli",
    holds: (p) =>
      ["src/cli.ts", "src/job.ts", "src/stores.ts"].includes(p) || /^src\/run[a-z_]*\.ts$/.test(p),
  },
  {
    name: "config",
    holds: (p) => ["src/config.ts", "src/settings.ts", "src/databases.ts"].includes(p),
  },
  { name: "commands", holds: (p) => p.startsWith("src/commands/") },
  {
    name: "services",
    holds: (p) =>
      p.startsWith("src/snapshot/") || p.startsWith("src/store/") ||
      /^src\/metrics(_[a-z_]+)?\.ts$/.test(p),
  },
  { name: "leaves", holds: (p) => /^src\/[a-z_]+\.ts$/.test(p) },
];

/** One import: from a file, to a specifier (resolved to a repository path when relative). */
interface Edge {
  from: string;
  to: string;
  /** `import type …` or every name imported with `type`: erased, loads nothing at run time. */
  typeOnly: boolean;
  dynamic: boolean;
}

/** Returns the index of the layer that holds `path` (0 is the top), or -1 outside the layers. */
function layerOf(path: string): number {
  return LAYERS.findIndex((l) => l.holds(path));
}

/** Lists every .ts file of main.ts and src/, as repository paths. */
async function sourceFiles(): Promise<string[]> {
  const out = ["main.ts"];
  const walk = async (dir: string) => {
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(p);
      else if (e.name.endsWith(".ts")) out.push(p);
    }
  };
  await walk("src");
  return out.sort();
}

/** Reads the imports of `file` (comments removed, so prose cannot pose as an import). */
async function importsOf(file: string): Promise<Edge[]> {
  const text = (await Deno.readTextFile(join(ROOT, file)))
    .replace(/\/\*[\s\S]*?\*\//g, "")
    .replace(/^\s*\/\/.*$/gm, "");
  const edges: Edge[] = [];
  const add = (spec: string, typeOnly: boolean, dynamic: boolean) => {
    const to = spec.startsWith(".") ? normalize(join(dirname(file), spec)) : spec;
    edges.push({ from: file, to, typeOnly, dynamic });
  };
  const isTypeOnly = (clause: string) => {
    const c = clause.trim();
    if (c.startsWith("type ")) return true;
    const names = /^\{([\s\S]*)\}$/.exec(c)?.[1].split(",").map((n) => n.trim()).filter(Boolean);
    return names !== undefined && names.length > 0 && names.every((n) => n.startsWith("type "));
  };
  for (const m of text.matchAll(/^\s*(import|export)\s+([^;]*?)\s+from\s+["']([^"']+)["']/gm)) {
    add(m[3], m[1] === "import" && isTypeOnly(m[2]), false);
  }
  for (const m of text.matchAll(/^\s*import\s+["']([^"']+)["']/gm)) add(m[1], false, false);
  for (const m of text.matchAll(/\bimport\s*\(\s*["']([^"']+)["']\s*\)/g)) add(m[1], false, true);
  for (const m of text.matchAll(/new URL\(\s*["'](\.[^"']+)["']\s*,\s*import\.meta\.url\s*\)/g)) {
    add(m[1], false, true);
  }
  return edges;
}

/** The whole graph of main.ts and src/. */
async function importGraph(): Promise<Edge[]> {
  return (await Promise.all((await sourceFiles()).map(importsOf))).flat();
}

/** Returns one line per edge that points up a layer, naming both ends and their layers. */
function upwardEdges(edges: Edge[]): string[] {
  return edges.flatMap((e) => {
    const from = layerOf(e.from), to = layerOf(e.to);
    if (to < 0 || to >= from) return [];
    return [
      `${e.from} (${LAYERS[from].name}) imports ${e.to} (${LAYERS[to].name}): an import may ` +
      "point only to its own layer or a lower one",
    ];
  });
}

const isSdk = (to: string) => to.startsWith("@aws-sdk/") || to.startsWith("@smithy/");

Deno.test("architecture: every file of main.ts and src/ is in a layer", async () => {
  const loose = (await sourceFiles()).filter((f) => layerOf(f) < 0);
  assert.deepEqual(loose, [], "add these files to a layer in ARCHITECTURE.md and this test");
});

Deno.test("architecture: the import graph is read (it holds edges known to exist)", async () => {
  const edges = await importGraph();
  const has = (from: string, to: string, dynamic: boolean) =>
    edges.some((e) => e.from === from && e.to === to && e.dynamic === dynamic);
  assert.ok(has("main.ts", "src/cli.ts", true), "main.ts loads the CLI with import()");
  assert.ok(has("src/cli.ts", "src/config.ts", false), "the CLI imports config");
  assert.ok(has("src/store/open.ts", "src/store/s3.ts", true), "the S3 store is loaded lazily");
  assert.ok(has("src/snapshot/snapshot.ts", "src/snapshot/worker.ts", true), "the worker URL");
  // The checker itself names an offending edge.
  assert.deepEqual(
    upwardEdges([{ from: "src/fsutil.ts", to: "src/cli.ts", typeOnly: true, dynamic: false }]),
    [
      "src/fsutil.ts (leaves) imports src/cli.ts (cli): an import may point only to its own " +
      "layer or a lower one",
    ],
  );
});

Deno.test("architecture: no import points up a layer (type-only imports included)", async () => {
  assert.deepEqual(upwardEdges(await importGraph()), []);
});

Deno.test("architecture: commands hold no S3 or SQLite details", async () => {
  const bad = (await importGraph())
    .filter((e) => e.from.startsWith("src/commands/") && (isSdk(e.to) || e.to === "node:sqlite"))
    .map((e) => `${e.from} imports ${e.to}: S3 belongs in src/store/, SQLite in src/snapshot/`);
  assert.deepEqual(bad, []);
});

Deno.test("architecture: the AWS SDK and node:sqlite are each used in one place", async () => {
  const edges = await importGraph();
  const sdk = edges.filter((e) => isSdk(e.to) && !e.typeOnly && !/^src\/store\/s3/.test(e.from));
  assert.deepEqual(
    sdk.map((e) => `${e.from} imports ${e.to} (only src/store/s3*.ts may load the SDK)`),
    [],
  );
  const sqlite = edges.filter((e) =>
    e.to === "node:sqlite" && e.from !== "src/snapshot/worker.ts" &&
    e.from !== "src/dbfile_in_use.ts"
  );
  assert.deepEqual(
    sqlite.map((e) =>
      `${e.from} imports node:sqlite (only snapshot/worker.ts and dbfile_in_use.ts may)`
    ),
    [],
  );
});

Deno.test("architecture: only store/open.ts's import() loads the S3 store", async () => {
  // A restore that finds its database in place must not load the AWS SDK (start-up time, memory).
  // Every src/store/s3*.ts module loads SDK code (s3.ts, s3_upload.ts, s3_credentials.ts, ...).
  const s3Module = (f: string) => /^src\/store\/s3[^/]*\.ts$/.test(f);
  const edges = await importGraph();
  const bad = edges.filter((e) => s3Module(e.to) && !e.typeOnly && !e.dynamic && !s3Module(e.from));
  assert.deepEqual(
    bad.map((e) => `${e.from} imports ${e.to} at load time: use import type`),
    [],
  );
  const dynamic = edges.filter((e) => s3Module(e.to) && e.dynamic);
  assert.deepEqual(
    dynamic.filter((e) => e.from !== "src/store/open.ts").map((e) => `${e.from} loads ${e.to}`),
    [],
  );
  assert.ok(dynamic.length > 0, "store/open.ts's import() of the S3 store is in the graph");
});
