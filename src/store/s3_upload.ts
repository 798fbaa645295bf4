/**
 * Uploads one file as one S3 object: a single PutObject when it fits in one part, else a
 * multipart upload whose parts are read straight from the file.
 *
 * Why by hand and not `@aws-sdk/lib-storage`'s `Upload`: on a 1 GiB database lib-storage peaked
 * at 245 MiB of memory, this code at 123 MiB (BENCHMARKS.md, "What changed after the first run";
 * `deno task bench` reproduces it). Each of `concurrency` part workers reads its next part with
 * positional reads into one reused `partSize` buffer, so memory stays at concurrency × partSize
 * whatever the file's size, and a `Uint8Array` body lets the SDK's own retries resend a part.
 * Switching back to lib-storage (or to a stream body) brings the memory back: measure first.
 *
 * Every body carries its Content-MD5, so a server that checks it refuses a body damaged in
 * transit, and every answer must carry an ETag. Any failure or abort aborts the multipart upload,
 * so nothing a restore could list is left. Proving the object is there is the store's job.
 */
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { TransientError } from "../errors.ts";
import { logger } from "../log.ts";
import type { EtagCheck } from "./etag_check.ts";
import type { S3Operation } from "./s3_errors.ts";

const log = logger("store");

/** S3 allows at most 10,000 parts in one multipart upload. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;
/**
 * Times a part whose ETag is not the MD5 sent goes up again. Once a resent part still differs,
 * no other part of the upload is resent: the store's ETags may not be MD5s at all, and the
 * object's read back decides (a damaged body twice in a row is not worth sending every part 3×).
 */
const PART_RESENDS = 1;

/** The one request head of an upload: the same for PutObject and CreateMultipartUpload. */
export type UploadHead = CreateMultipartUploadCommandInput & { Bucket: string; Key: string };

/** How to upload: the client, the part size floor and parts in flight, and the request wrapper. */
export interface UploadOptions {
  client: S3Client;
  /** Part size floor in bytes (raised so that the file fits in 10,000 parts). */
  partSize: number;
  /** How many parts are in flight at once (LIFEBOAT_S3_CONCURRENCY). */
  concurrency: number;
  /** Runs request `op` and maps its failure to a one-line error naming it (the store's context). */
  request: <T>(op: S3Operation, send: () => Promise<T>) => Promise<T>;
  /**
   * Must resolve before the object becomes visible (before the PutObject, or before
   * CompleteMultipartUpload, so the parts upload meanwhile); when it rejects, the upload is
   * aborted and its error thrown.
   */
  ready?: Promise<void>;
  /**
   * Sends `If-None-Match: *` on the request that makes the object visible (PutObject,
   * CompleteMultipartUpload): an object already at the key is never replaced (a 412 instead).
   */
  ifNoneMatch?: boolean;
  /** Compares each ETag with the MD5 sent (etag_check.ts); none: not compared. */
  etags?: EtagCheck;
}

/** What an upload's answers showed. */
export interface Uploaded {
  /**
   * True when an answer's ETag still was not the MD5 of the bytes sent (a part: after
   * PART_RESENDS more tries): the object must be read back before it counts.
   */
  etagDiffers: boolean;
}

/** Returns a part size ≥ `floor` (whole MiB) such that `size` fits in 10,000 parts. */
export function partSizeFor(size: number, floor: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  return Math.max(floor, Math.ceil(needed / MiB) * MiB);
}

/**
 * Uploads `file` under `head`, one PutObject or a multipart upload, made visible only once
 * `o.ready` resolved. Resolves once every answer carried an ETag; on failure, when `o.ready`
 * rejects or once `signal` aborts it throws, and a multipart upload is aborted first (no part
 * lands after the abort). When `o.ready` rejected, its error is the one thrown, whatever the
 * requests in flight failed with. A part whose ETag is not the MD5 sent goes up again.
 */
export async function uploadFile(
  file: string,
  head: UploadHead,
  o: UploadOptions,
  signal?: AbortSignal,
): Promise<Uploaded> {
  const size = (await Deno.stat(file)).size;
  const partSize = partSizeFor(size, o.partSize);
  const cond = o.ifNoneMatch ? { IfNoneMatch: "*" } : {};
  const stop = new AbortController();
  const onAbort = () => stop.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  // A failed check (a damaged database) stops every request at once, and it is the error
  // reported whatever those requests were doing: each of them fails with an abort of its own
  // (CreateMultipartUpload, a part, the PutObject), which must never read as a network fault.
  let failedCheck: { error: unknown } | undefined;
  o.ready?.catch((error) => {
    failedCheck = { error };
    stop.abort(error);
  });
  try {
    signal?.throwIfAborted();
    if (size <= partSize) {
      await o.ready;
      const Body = await Deno.readFile(file);
      const sum = md5Of(Body);
      const res = await o.request(
        "PutObject",
        () =>
          o.client.send(new PutObjectCommand({ ...head, Body, ContentMD5: sum.base64, ...cond }), {
            abortSignal: stop.signal,
          }),
      );
      requireETag(res.ETag, `PutObject of ${head.Key}`);
      return { etagDiffers: o.etags?.differs(res, sum.hex) ?? false };
    } else {
      return await multipart(file, head, size, partSize, { ...o, complete: cond }, stop);
    }
  } catch (err) {
    throw failedCheck ? failedCheck.error : err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** The multipart half of `uploadFile`: `concurrency` part workers; aborted on any failure. */
async function multipart(
  file: string,
  head: UploadHead,
  size: number,
  partSize: number,
  o: UploadOptions & { complete: { IfNoneMatch?: string } },
  stop: AbortController,
): Promise<Uploaded> {
  const { Bucket, Key } = head;
  const opts = { abortSignal: stop.signal };
  const { UploadId } = await o.request(
    "CreateMultipartUpload",
    () => o.client.send(new CreateMultipartUploadCommand(head), opts),
  );
  if (!UploadId) {
    throw new TransientError(
      `CreateMultipartUpload of ${Key} answered without an UploadId`,
      "lifeboat retries the upload; if it persists, check that the endpoint is an S3 store",
    );
  }
  try {
    const count = Math.ceil(size / partSize);
    const parts: CompletedPart[] = new Array(count);
    let next = 0, etagDiffers = false;
    const worker = async () => {
      using f = await Deno.open(file, { read: true });
      const buf = new Uint8Array(partSize);
      while (next < count && !stop.signal.aborted) {
        const n = next++;
        const start = n * partSize;
        const body = buf.subarray(0, Math.min(partSize, size - start));
        await f.seek(start, Deno.SeekMode.Start);
        for (let off = 0; off < body.length;) {
          const got = await f.read(body.subarray(off));
          if (got === null) throw new Error(`${file} got shorter during the upload`);
          off += got;
        }
        const PartNumber = n + 1;
        const sum = md5Of(body);
        const send = () =>
          o.request("UploadPart", () =>
            o.client.send(
              new UploadPartCommand({
                Bucket,
                Key,
                UploadId,
                PartNumber,
                Body: body,
                ContentMD5: sum.base64,
              }),
              opts,
            ));
        let res = await send();
        // Before the object is visible a damaged part can still be replaced: send it again.
        for (let i = 0; i < PART_RESENDS && !etagDiffers && o.etags?.differs(res, sum.hex); i++) {
          log.warn(
            "part {part} of {key}: the store's ETag is not the MD5 of the bytes sent (damaged " +
              "on the way?): sending it again",
            { event: "part_etag_differs", part: PartNumber, key: Key },
          );
          res = await send();
        }
        if (o.etags?.differs(res, sum.hex)) etagDiffers = true;
        parts[n] = { PartNumber, ETag: requireETag(res.ETag, `part ${PartNumber} of ${Key}`) };
      }
    };
    const workers = Array.from(
      { length: Math.min(o.concurrency, count) },
      () =>
        worker().catch((err) => {
          stop.abort(err);
          throw err;
        }),
    );
    // Wait for every worker to stop before aborting, so no part lands after the abort.
    const failed = (await Promise.allSettled(workers)).find((r) => r.status === "rejected");
    // The first failure stopped the other workers: report it, not their "Request aborted".
    if (failed) throw stop.signal.reason ?? failed.reason;
    stop.signal.throwIfAborted();
    await o.ready;
    stop.signal.throwIfAborted();
    // Some servers (Ceph radosgw) answer CompleteMultipartUpload without an ETag: the
    // HeadObject that follows every upload is the proof that counts.
    await o.request("CompleteMultipartUpload", () =>
      o.client.send(
        new CompleteMultipartUploadCommand({
          Bucket,
          Key,
          UploadId,
          MultipartUpload: { Parts: parts },
          ...o.complete,
        }),
        opts,
      ));
    return { etagDiffers };
  } catch (err) {
    await o.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }))
      .catch(() => {});
    throw err;
  }
}

/**
 * Makes `client` sign every request that carries Content-MD5 with `x-amz-content-sha256:
 * UNSIGNED-PAYLOAD` instead of the body's SHA-256 (the signer takes a header already set). Why:
 * the SDK would hash every part a second time on the one JS thread, and Content-MD5, which is
 * signed, already makes the store refuse a body that is not the one sent. Never throws.
 */
export function signBodiesByMd5(client: S3Client): void {
  client.middlewareStack.add(
    (next) => (args) => {
      const headers = (args.request as { headers?: Record<string, string> }).headers;
      if (headers?.["content-md5"]) headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      return next(args);
    },
    { step: "build", name: "lifeboatUnsignedPayload" },
  );
}

/** Base64 MD5 of a request body, for Content-MD5 (understood by every S3 implementation). */
export function md5(body: Uint8Array): string {
  return md5Of(body).base64;
}

/** A body's MD5 in base64 (Content-MD5) and in hex (an ETag's form); never throws. */
function md5Of(body: Uint8Array): { base64: string; hex: string } {
  const digest = createHash("md5").update(body).digest();
  return { base64: digest.toString("base64"), hex: digest.toString("hex") };
}

/** Returns `etag`, or throws (retryable) when the store answered a write without one. */
export function requireETag(etag: string | undefined, what: string): string {
  if (!etag || etag.replaceAll('"', "").trim() === "") {
    throw new TransientError(
      `${what} was answered without an ETag: the store did not confirm it`,
      "lifeboat uploads again under a new key; if it persists, check that the endpoint is an S3 " +
        "store and not a proxy",
    );
  }
  return etag;
}
