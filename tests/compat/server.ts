/**
 * The S3 server a compatibility run talks to: the one named by LIFEBOAT_COMPAT_ENDPOINT (with
 * LIFEBOAT_COMPAT_ACCESS_KEY / LIFEBOAT_COMPAT_SECRET_KEY, e.g. radosgw from scripts/start-rgw.sh),
 * or else a moto_server started here. Loopback only.
 */
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { startLocalS3 } from "../../testkit/moto.ts";

/** A reachable S3 server and a client for looking at it directly. */
export interface CompatServer {
  /** What it is, for test names and logs: `radosgw 16.2.15`, `moto`. */
  name: string;
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** Whether it verifies request signatures (moto does not). */
  checksSignatures: boolean;
  client: S3Client;
  /** Creates a fresh bucket with a unique name and returns the name; throws on failure. */
  bucket(): Promise<string>;
  /** Every object key under `prefix` (all pages). */
  keys(bucket: string, prefix: string): Promise<string[]>;
  /** Multipart uploads started and neither completed nor aborted. */
  pendingUploads(bucket: string): Promise<number>;
  /** Stops what this module started (nothing for an external server). */
  stop(): Promise<void>;
}

let n = 0;

/** Connects to LIFEBOAT_COMPAT_ENDPOINT, or starts moto_server; throws if neither answers. */
export async function compatServer(): Promise<CompatServer> {
  Deno.env.set("AWS_EC2_METADATA_DISABLED", "true");
  const external = Deno.env.get("LIFEBOAT_COMPAT_ENDPOINT");
  const moto = external ? undefined : await startLocalS3();
  const endpoint = external ?? moto!.endpoint;
  const accessKey = external ? Deno.env.get("LIFEBOAT_COMPAT_ACCESS_KEY") ?? "" : "testing";
  const secretKey = external ? Deno.env.get("LIFEBOAT_COMPAT_SECRET_KEY") ?? "" : "testing";
  if (!/^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)[:/]/.test(endpoint)) {
    throw new Error(`LIFEBOAT_COMPAT_ENDPOINT ${endpoint}: tests only talk to loopback`);
  }
  const client = new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    credentials: { accessKeyId: accessKey, secretAccessKey: secretKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  const run = `${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 4)}`;
  return {
    name: external ? Deno.env.get("LIFEBOAT_COMPAT_SERVER") || "external S3" : "moto",
    endpoint,
    accessKey,
    secretKey,
    checksSignatures: external !== undefined,
    client,
    async bucket() {
      const name = `compat-${run}-${++n}`;
      await client.send(new CreateBucketCommand({ Bucket: name }));
      return name;
    },
    async keys(bucket, prefix) {
      const out: string[] = [];
      let ContinuationToken: string | undefined;
      do {
        const page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken }),
        );
        out.push(...(page.Contents ?? []).map((o) => o.Key!));
        ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (ContinuationToken);
      return out;
    },
    async pendingUploads(bucket) {
      const res = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
      return res.Uploads?.length ?? 0;
    },
    async stop() {
      client.destroy();
      await moto?.stop();
    },
  };
}
