/**
 * An HTTPS store, reached with exactly the compiled binary's permissions. Deno's node:https looks
 * up the system's CA certificates whenever NODE_EXTRA_CA_CERTS is set, which needs all of
 * `--allow-sys` ("ca" cannot be granted on its own): with `--allow-sys=hostname,…` every request
 * failed with `NotCapable: Requires sys access to "ca"` (#24.2, seen as LIFEBOAT_S3_ENDPOINT="aws ").
 * The certificate is issued here by a throwaway CA (openssl), which the runs trust.
 */
import assert from "node:assert/strict";
import { baseEnv, runLifeboat } from "../testkit/cli.ts";
import { startLocalS3 } from "../testkit/moto.ts";
import { startS3Proxy } from "../testkit/s3_proxy.ts";
import { LOOSE, tempDir } from "../testkit/scene.ts";
import { makeDb, readRows } from "../testkit/sqlite.ts";

/** Runs openssl with `args` in `dir`; throws with its stderr when it fails. */
async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA (ca.pem) and a certificate it signed for 127.0.0.1 (leaf.pem, leaf.key) in `dir`. */
async function certificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    dir,
    "req",
    "-x509",
    ...ec,
    "-days",
    "2",
    "-subj",
    "/CN=lifeboat test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  );
  await openssl(
    dir,
    "req",
    ...ec,
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    "leaf.key",
    "-out",
    "leaf.csr",
  );
  await Deno.writeTextFile(
    `${dir}/leaf.ext`,
    "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
  );
  await openssl(
    dir,
    "x509",
    "-req",
    "-in",
    "leaf.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "leaf.ext",
    "-out",
    "leaf.pem",
  );
  return {
    ca: `${dir}/ca.pem`,
    cert: await Deno.readTextFile(`${dir}/leaf.pem`),
    key: await Deno.readTextFile(`${dir}/leaf.key`),
  };
}

Deno.test({
  name:
    "#24.2 an HTTPS store works with the binary's permissions, with NODE_EXTRA_CA_CERTS or DENO_CERT",
  ...LOOSE,
  fn: async () => {
    const s3 = await startLocalS3();
    const dir = await tempDir();
    const { ca, cert, key } = await certificates(dir);
    const proxy = startS3Proxy(s3.endpoint, { tls: { cert, key } });
    try {
      assert.match(proxy.endpoint, /^https:\/\//);
      await s3.createBucket("tls");
      makeDb(`${dir}/app.db`, 25);
      const env = baseEnv({
        ...s3.env,
        // The space is trimmed like every value's; the URL is the proxy's.
        LIFEBOAT_S3_ENDPOINT: `${proxy.endpoint} `,
        LIFEBOAT_URL: "s3://tls/app",
        LIFEBOAT_S3_MAX_ATTEMPTS: "1",
        LIFEBOAT_RESTORE_ATTEMPTS: "1",
      });
      const extra = { ...env, NODE_EXTRA_CA_CERTS: ca };
      const backup = await runLifeboat(["backup", "--db", `${dir}/app.db`], extra);
      assert.equal(backup.code, 0, backup.stderr);
      const restore = await runLifeboat(["restore", "--db", `${dir}/restored.db=app`], extra);
      assert.equal(restore.code, 0, restore.stderr);
      assert.deepEqual(readRows(`${dir}/restored.db`), readRows(`${dir}/app.db`));
      // Deno's own variable for a private CA serves every request too.
      const list = await runLifeboat(["list", "--db", `${dir}/app.db`], { ...env, DENO_CERT: ca });
      assert.equal(list.code, 0, list.stderr);
      assert.match(list.stdout, /backups\/daily\/app\/\d{13}-/);
      const ops = proxy.counts();
      assert.ok(ops.PutObject >= 1 && ops.GetObject >= 1, JSON.stringify(ops));
    } finally {
      await proxy.stop();
      await s3.stop();
    }
  },
});
