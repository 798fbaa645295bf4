/**
 * The raw SDK limit: one bare PutObject (file stream with its length) or GetObject (streamed to
 * a file, no hashing, no fsync) of the same bytes lifeboat moves, as a separate process like
 * lifeboat. Usage: `sdk.ts put|get BUCKET KEY FILE`; AWS_ENDPOINT_URL_S3 names the server.
 * Prints `{"ms": transfer time}` on stdout.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { s3Client } from "./lib.ts";

/** Runs one transfer and returns its duration in milliseconds. */
export async function transfer(
  op: "put" | "get",
  bucket: string,
  key: string,
  file: string,
): Promise<number> {
  const client = s3Client(Deno.env.get("AWS_ENDPOINT_URL_S3") ?? "");
  const t0 = performance.now();
  if (op === "put") {
    const size = (await Deno.stat(file)).size;
    await client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: createReadStream(file, { highWaterMark: 1 << 20 }),
        ContentLength: size,
      }),
    );
  } else {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    await pipeline(res.Body as Readable, createWriteStream(file));
  }
  return performance.now() - t0;
}

if (import.meta.main) {
  const [op, bucket, key, file] = Deno.args;
  if ((op !== "put" && op !== "get") || !file) {
    console.error("usage: sdk.ts put|get BUCKET KEY FILE");
    Deno.exit(2);
  }
  console.log(JSON.stringify({ ms: await transfer(op, bucket, key, file) }));
}
