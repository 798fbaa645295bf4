/** A store under an S3 prefix (AWS or any S3-compatible endpoint). */
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  type S3ClientConfig,
  type ServerSideEncryption,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import { BACKUPS_DIR, MARKER_NAME, parseKey } from "./keys.ts";
import { roleCredentials, type RoleSettings } from "./s3_credentials.ts";
import { errorCode, mapS3Error, type S3Operation } from "./s3_errors.ts";
import {
  type BackupInfo,
  type BackupMeta,
  markerFromJson,
  markerToJson,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type Store,
  type StoreMarker,
  SUPERSEDED_TAG,
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
   * Every body carries its Content-MD5, so a server that verifies it refuses a body damaged in
   * transit; every answer must carry an ETag; and the object only counts once a HeadObject shows
   * the expected size and SHA-256 (a 200 from something that is not the store proves nothing).
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
        const res = await this.mapped(
          "PutObject",
          () =>
            this.client.send(new PutObjectCommand({ ...head, Body, ContentMD5: md5(Body) }), opts),
          signal,
        );
        requireETag(res.ETag, `PutObject of ${Key}`);
      } else {
        await this.multipart(head, file, size, partSize, stop, signal);
      }
      await this.verifyStored(Key, meta, signal);
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** The multipart half of `put`: parts in `queueSize` lanes; aborted on any failure. */
  private async multipart(
    head: CreateMultipartUploadCommandInput & { Bucket: string; Key: string },
    file: string,
    size: number,
    partSize: number,
    stop: AbortController,
    signal?: AbortSignal,
  ): Promise<void> {
    const { Bucket, Key } = head;
    const opts = { abortSignal: stop.signal };
    const { UploadId } = await this.mapped(
      "PutObject",
      () => this.client.send(new CreateMultipartUploadCommand(head), opts),
      signal,
    );
    if (!UploadId) throw new Error(`CreateMultipartUpload of ${Key} answered without an UploadId`);
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
          const PartNumber = n + 1;
          const res = await this.mapped(
            "PutObject",
            () =>
              this.client.send(
                new UploadPartCommand({
                  Bucket,
                  Key,
                  UploadId,
                  PartNumber,
                  Body: body,
                  ContentMD5: md5(body),
                }),
                opts,
              ),
            signal,
          );
          parts[n] = { PartNumber, ETag: requireETag(res.ETag, `part ${PartNumber} of ${Key}`) };
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
      // The first failure aborted the other lanes: report it, not their "Request aborted".
      if (failed) throw stop.signal.reason ?? failed.reason;
      stop.signal.throwIfAborted();
      // Some servers (Ceph radosgw) answer CompleteMultipartUpload without an ETag: the
      // HeadObject that follows every upload is the proof that counts.
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
  }

  /** Throws unless a HeadObject of `Key` shows `meta`'s size and SHA-256. */
  private async verifyStored(Key: string, meta: BackupMeta, signal?: AbortSignal): Promise<void> {
    const res = await this.mapped(
      "HeadObject",
      () => this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key })),
      signal,
    );
    const stored = metaFromRecord(res.Metadata ?? {});
    if (res.ContentLength !== meta.size || stored.sha256 !== meta.sha256) {
      throw new Error(
        `the store does not hold ${Key} as uploaded: HeadObject shows ` +
          `${res.ContentLength ?? "no"} bytes and ${stored.sha256 ? "another" : "no"} SHA-256, ` +
          `expected ${meta.size} bytes`,
      );
    }
  }

  /**
   * Newest first, from the `backups/` sub-prefix: one ListObjectsV2 of `limit` keys, however many
   * other objects share the prefix. Only when it holds none, the legacy root layout is listed
   * (with a delimiter, so nested foreign objects do not count). Every answer is validated.
   */
  async newest(limit: number): Promise<BackupInfo[]> {
    const current = await this.list(`${this.keyPrefix}${BACKUPS_DIR}/`, limit, limit);
    return current.length > 0 ? current : await this.list(this.keyPrefix, limit, 1000, "/");
  }

  /** Lists backup keys under `prefix`, paging until `limit` are found or the listing ends. */
  private async list(
    prefix: string,
    limit: number,
    MaxKeys: number,
    Delimiter?: string,
  ): Promise<BackupInfo[]> {
    const out: BackupInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.mapped("ListObjectsV2", () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.s.bucket,
            Prefix: prefix,
            MaxKeys,
            Delimiter,
            ContinuationToken: token,
          }),
        ));
      checkListing(page, this.s.bucket, prefix);
      for (const obj of page.Contents ?? []) {
        const key = obj.Key!.slice(this.keyPrefix.length);
        const parsed = parseKey(key);
        if (parsed && out.length < limit) {
          out.push({
            key,
            createdAt: new Date(parsed.ms),
            machine: parsed.machine,
            size: obj.Size,
          });
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

  /** One HeadObject: the backup's user metadata (sha256, size, …) without its bytes. */
  async describe(key: string): Promise<Partial<BackupMeta>> {
    const Key = this.objectKey(key);
    const res = await this.mapped(
      "HeadObject",
      () => this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key })),
    );
    return metaFromRecord(res.Metadata ?? {});
  }

  /** Reads `PREFIX/lifeboat.json`; undefined only on the store's own NoSuchKey answer. */
  async marker(): Promise<StoreMarker | undefined> {
    const Key = this.keyPrefix + MARKER_NAME;
    let text: string;
    try {
      const res = await this.mapped(
        "GetObject",
        () => this.client.send(new GetObjectCommand({ Bucket: this.s.bucket, Key })),
      );
      text = (await res.Body?.transformToString()) ?? "";
    } catch (err) {
      if (errorCode(err) === "NoSuchKey") return undefined;
      throw err;
    }
    return markerFromJson(text, `s3://${this.s.bucket}/${Key}`);
  }

  /** Writes `PREFIX/lifeboat.json` unless it is there (a race only rewrites the same facts). */
  async putMarker(marker: StoreMarker): Promise<void> {
    if (await this.marker()) return;
    const Key = this.keyPrefix + MARKER_NAME;
    const Body = new TextEncoder().encode(markerToJson(marker));
    const res = await this.mapped("PutObject", () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.s.bucket,
          Key,
          Body,
          ContentMD5: md5(Body),
          ContentType: "application/json",
        }),
      ));
    requireETag(res.ETag, `PutObject of ${Key}`);
  }

  /** Tags `key` as superseded: the bucket's lifecycle rule expires only tagged backups. */
  async supersede(key: string): Promise<void> {
    const Key = this.objectKey(key);
    await this.mapped("PutObjectTagging", () =>
      this.client.send(
        new PutObjectTaggingCommand({
          Bucket: this.s.bucket,
          Key,
          Tagging: { TagSet: [{ Key: SUPERSEDED_TAG.key, Value: SUPERSEDED_TAG.value }] },
        }),
      ));
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

/** Base64 MD5 of a request body, for Content-MD5 (understood by every S3 implementation). */
function md5(body: Uint8Array): string {
  return createHash("md5").update(body).digest("base64");
}

/** Returns `etag`, or throws when the store answered a write without one (nothing proves it). */
function requireETag(etag: string | undefined, what: string): string {
  if (!etag || etag.replaceAll('"', "").trim() === "") {
    throw new Error(`${what} was answered without an ETag: the store did not confirm it`);
  }
  return etag;
}

/**
 * Throws unless `page` is a ListObjectsV2 result for `bucket` and `prefix`: a 200 whose body is
 * an HTML page, empty, or a listing of something else must never read as "no backups".
 */
export function checkListing(page: ListObjectsV2CommandOutput, bucket: string, prefix: string) {
  const problems: string[] = [];
  if (page.Name !== bucket) problems.push(`bucket ${JSON.stringify(page.Name ?? null)}`);
  if ((page.Prefix ?? "") !== prefix) {
    problems.push(`prefix ${JSON.stringify(page.Prefix ?? null)}`);
  }
  if (typeof page.IsTruncated !== "boolean") problems.push("no IsTruncated");
  if (page.IsTruncated && !page.NextContinuationToken) {
    problems.push("truncated without a continuation token");
  }
  const foreign = (page.Contents ?? []).find((o) => !o.Key?.startsWith(prefix));
  if (foreign) problems.push(`key ${JSON.stringify(foreign.Key ?? null)} outside the prefix`);
  if (problems.length > 0) {
    throw new Error(
      `the answer to ListObjectsV2 is not a listing of s3://${bucket}/${prefix} ` +
        `(${problems.join(", ")}): is AWS_ENDPOINT_URL_S3 the S3 endpoint?`,
    );
  }
}
