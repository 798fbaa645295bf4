/**
 * scripts/compat.sh on a machine where radosgw cannot be installed: it says it skipped and does
 * not fail .ci/run, unless LIFEBOAT_COMPAT_REQUIRED=1 (GitHub's compat job) makes that a failure.
 * Runs the script with a PATH holding only the tools it needs and an apt-get that always fails.
 */
import assert from "node:assert/strict";
import { ROOT } from "../testkit/cli.ts";
import { tempDir } from "../testkit/scene.ts";

/** Runs scripts/compat.sh with `extra` env and no radosgw on PATH; returns code and output. */
async function compatWithoutPackages(extra: Record<string, string> = {}) {
  const bin = await tempDir("lifeboat-nopkg-");
  try {
    for (const tool of ["dirname", "id", "date", "timeout", "mktemp", "sudo"]) {
      const found = ["/usr/bin", "/bin"].map((d) => `${d}/${tool}`).find((p) => {
        try {
          return Deno.statSync(p).isFile;
        } catch {
          return false;
        }
      });
      if (found) await Deno.symlink(found, `${bin}/${tool}`);
    }
    await Deno.writeTextFile(`${bin}/apt-get`, "#!/bin/sh\necho 'E: no network' >&2\nexit 100\n");
    await Deno.chmod(`${bin}/apt-get`, 0o755);
    const out = await new Deno.Command("/bin/bash", {
      args: [`${ROOT}/scripts/compat.sh`],
      env: { PATH: bin, HOME: Deno.env.get("HOME") ?? "/tmp", ...extra },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    return { code: out.code, text };
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
}

Deno.test("compat.sh: without installable packages it says it skipped and exits 0", async () => {
  const r = await compatWithoutPackages();
  assert.equal(r.code, 0, r.text);
  assert.match(r.text, /^compat: skipped: radosgw packages not installable/m);
});

Deno.test("compat.sh: LIFEBOAT_COMPAT_REQUIRED=1 turns the skip into a failure", async () => {
  const r = await compatWithoutPackages({ LIFEBOAT_COMPAT_REQUIRED: "1" });
  assert.equal(r.code, 1, r.text);
  assert.match(r.text, /compat: skipped: radosgw packages not installable/);
});
