/** A store under an S3 prefix (AWS or any S3-compatible endpoint). */
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  type ServerSideEncryption,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import { parseKey } from "./keys.ts";
import { roleCredentials, type RoleSettings } from "./s3_credentials.ts";
import { mapS3Error, type S3Operation } from "./s3_errors.ts";
import {
  type BackupInfo,
  type BackupMeta,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type Store,
} from "./store.ts";

/** Everything the S3 store needs to know, already validated by config. */
export interface S3Settings {
  bucket: string;
  /** Key prefix without leading or trailing slash; "" for the bucket root. */
  prefix: string;
  region: string;
  /** Custom endpoint (MinIO, Tigris, R2, a local server); undefined for AWS. */
  endpoint?: string;
  forcePathStyle: boolean;
  checksum: "when_supported" | "when_required";
  sse: "AES256" | "aws:kms" | "none";
  kmsKeyId?: string;
  /** Credentials provider; undefined means `role`'s credentials, else the SDK's default chain. */
  credentials?: S3ClientConfig["credentials"];
  /** Role to assume with a web identity token (fly.io OIDC); undefined for none. */
  role?: RoleSettings;
  /** Upload part size floor in bytes and how many parts are in flight at once. */
  partSize: number;
  queueSize: number;
  /** SDK attempts per request (the SDK backs off between them). */
  maxAttempts: number;
  /** A request with no progress for this long (connecting, or between bytes) fails and is retried. */
  timeoutMs: number;
}

/** S3 allows at most 10,000 parts in one multipart upload. */
const MAX_PARTS = 10_000;
const MiB = 1024 * 1024;

/** Returns a part size ≥ `floor` (whole MiB) such that `size` fits in 10,000 parts. */
export function partSizeFor(size: number, floor: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  return Math.max(floor, Math.ceil(needed / MiB) * MiB);
}

/** Backups as objects under `s3://bucket/prefix/`. */
export class S3Store implements Store {
  readonly location: string;
  /** The SDK client, exposed so tests can count requests with middleware. */
  readonly client: S3Client;
  /** The client for GetObject: Deno's fetch underneath, for byte streams (see constructor). */
  readonly reader: S3Client;
  private readonly keyPrefix: string;

  /** Creates the client; no request is made until first use. */
  constructor(private readonly s: S3Settings) {
    this.keyPrefix = s.prefix ? `${s.prefix}/` : "";
    this.location = `s3://${s.bucket}/${s.prefix}`;
    const checksum = s.checksum === "when_required" ? "WHEN_REQUIRED" : "WHEN_SUPPORTED";
    const common = {
      region: s.region,
      endpoint: s.endpoint,
      forcePathStyle: s.forcePathStyle,
      credentials: s.credentials ?? (s.role ? roleCredentials(s.role) : undefined),
      requestChecksumCalculation: checksum,
      responseChecksumValidation: checksum,
      maxAttempts: s.maxAttempts,
      // config.ts chose the endpoint (lifeboat's own variables win): the SDK must not replace
      // "AWS" with an AWS_ENDPOINT_URL_S3 it finds in the environment or a profile.
      ignoreConfiguredEndpointUrls: true,
    } as const;
    // Downloads through Deno's own fetch: its response bodies are byte streams with
    // backpressure, read into one reused buffer (writeStreamHashed); node:http hands over a new
    // Buffer per chunk and lets ~64 MiB pile up before the garbage collector runs.
    this.reader = new S3Client({
      ...common,
      requestHandler: new FetchHttpHandler({ requestTimeout: s.timeoutMs }),
    });
    this.client = new S3Client({
      ...common,
      requestHandler: {
        connectionTimeout: s.timeoutMs,
        requestTimeout: s.timeoutMs,
        throwOnRequestTimeout: true,
      },
    });
  }

  /**
   * Uploads `file` as a new object: one PutObject when it fits in one part, else a multipart
   * upload whose parts are read straight from the file into one reused buffer per lane, so
   * memory stays at queueSize × partSize whatever the size. Any failure or abort aborts it.
   */
  async put(key: string, file: string, meta: BackupMeta, signal?: AbortSignal): Promise<void> {
    const Bucket = this.s.bucket, Key = this.objectKey(key);
    const sse = this.s.sse === "none" ? {} : {
      ServerSideEncryption: this.s.sse as ServerSideEncryption,
      ...(this.s.sse === "aws:kms" && this.s.kmsKeyId ? { SSEKMSKeyId: this.s.kmsKeyId } : {}),
    };
    const head = {
      Bucket,
      Key,
      ContentType: "application/vnd.sqlite3",
      Metadata: metaToRecord(meta),
      ...sse,
    };
    const size = (await Deno.stat(file)).size;
    const partSize = partSizeFor(size, this.s.partSize);
    const stop = new AbortController();
    const onAbort = () => stop.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort, { once: true });
    const opts = { abortSignal: stop.signal };
    try {
      signal?.throwIfAborted();
      if (size <= partSize) {
        const Body = await Deno.readFile(file);
        await this.mapped(
          "PutObject",
          () => this.client.send(new PutObjectCommand({ ...head, Body }), opts),
          signal,
        );
        return;
      }
      const { UploadId } = await this.mapped(
        "PutObject",
        () => this.client.send(new CreateMultipartUploadCommand(head), opts),
        signal,
      );
      try {
        const count = Math.ceil(size / partSize);
        const parts: CompletedPart[] = new Array(count);
        let next = 0;
        const lane = async () => {
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
            const res = await this.mapped(
              "PutObject",
              () =>
                this.client.send(
                  new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: n + 1, Body: body }),
                  opts,
                ),
              signal,
            );
            parts[n] = { PartNumber: n + 1, ETag: res.ETag };
          }
        };
        const lanes = Array.from(
          { length: Math.min(this.s.queueSize, count) },
          () =>
            lane().catch((err) => {
              stop.abort(err);
              throw err;
            }),
        );
        // Wait for every lane to stop before aborting, so no part lands after the abort.
        const failed = (await Promise.allSettled(lanes)).find((r) => r.status === "rejected");
        if (failed) throw failed.reason;
        stop.signal.throwIfAborted();
        await this.mapped(
          "PutObject",
          () =>
            this.client.send(
              new CompleteMultipartUploadCommand({
                Bucket,
                Key,
                UploadId,
                MultipartUpload: { Parts: parts },
              }),
              opts,
            ),
          signal,
        );
      } catch (err) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }))
          .catch(() => {});
        throw err;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** One ListObjectsV2 (more only if foreign objects crowd the page); newest first. */
  async newest(limit: number): Promise<BackupInfo[]> {
    const out: BackupInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.mapped("ListObjectsV2", () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.s.bucket,
            Prefix: this.keyPrefix,
            MaxKeys: limit,
            ContinuationToken: token,
          }),
        ));
      for (const obj of page.Contents ?? []) {
        const name = obj.Key?.slice(this.keyPrefix.length) ?? "";
        const parsed = parseKey(name);
        if (parsed && out.length < limit) {
          out.push({ key: name, createdAt: new Date(parsed.ms), size: obj.Size });
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && out.length < limit);
    return out;
  }

  /** Starts a GetObject and returns its body stream and user metadata. */
  async open(key: string): Promise<OpenedBackup> {
    const cmd = new GetObjectCommand({ Bucket: this.s.bucket, Key: this.objectKey(key) });
    const res = await this.mapped("GetObject", () => this.reader.send(cmd));
    if (!res.Body) throw new Error(`empty response body for ${key}`);
    return {
      body: res.Body.transformToWebStream() as ReadableStream<Uint8Array>,
      // The fetch handler's timeout ends at the headers: the reader guards the body itself.
      idleMs: this.s.timeoutMs,
      meta: metaFromRecord(res.Metadata ?? {}),
    };
  }

  /** Runs one request; a permanent failure becomes a one-line LifeboatError (see s3_errors.ts). */
  private async mapped<T>(op: S3Operation, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw mapS3Error(err, {
        op,
        bucket: this.s.bucket,
        prefix: this.s.prefix,
        roleArn: this.s.role?.roleArn,
      });
    }
  }

  private objectKey(key: string): string {
    if (!parseKey(key)) throw new Error(`not a backup key: ${JSON.stringify(key)}`);
    return this.keyPrefix + key;
  }
}
