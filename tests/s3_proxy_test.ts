/**
 * The test proxy itself: a reset it injects on purpose is quiet (#23.6: Deno.serve's default
 * error handler printed it with a stack trace in every passing `deno task test`), while the
 * client still sees the connection fail.
 */
import assert from "node:assert/strict";
import { ROOT } from "../testkit/cli.ts";

Deno.test("s3 proxy: an injected reset fails the download and prints nothing", async () => {
  // In a process of its own, so that its stderr is all there is to read.
  const script = `
    import { startS3Proxy } from "${ROOT}/testkit/s3_proxy.ts";
    const upstream = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} },
      () => new Response(new Uint8Array(64 * 1024)));
    const proxy = startS3Proxy("http://127.0.0.1:" + upstream.addr.port);
    proxy.faults.push({ match: () => true, action: { kind: "reset", afterBytes: 1000 } });
    const outcome = await fetch(proxy.endpoint + "/bucket/key")
      .then((r) => r.arrayBuffer()).then(() => "complete", () => "failed");
    await proxy.stop();
    await upstream.shutdown();
    console.log(outcome);
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "-q", "--no-check", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  assert.equal(out.code, 0, decode(out.stderr));
  assert.equal(decode(out.stdout).trim(), "failed", "the client saw the reset");
  assert.equal(decode(out.stderr), "", "nothing printed");
});
