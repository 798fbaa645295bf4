/** A store under an S3 prefix (AWS or any S3-compatible endpoint). */
import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  type ServerSideEncryption,
} from "@aws-sdk/client-s3";
import { FetchHttpHandler } from "@smithy/fetch-http-handler";
import { TransientError } from "../errors.ts";
import { BACKUPS_DIR, checkKey, MARKER_NAME, parseKey } from "./keys.ts";
import { downloadRanges } from "./ranged_download.ts";
import { roleCredentials } from "./s3_credentials.ts";
import { failWhenStalled } from "./stall.ts";
import { errorCode, mapS3Error, type S3Operation } from "./s3_errors.ts";
import { md5, requireETag, uploadFile, type UploadHead } from "./s3_upload.ts";
import type { S3Settings } from "./settings.ts";
import {
  type BackupInfo,
  type BackupMeta,
  type DownloadedBackup,
  markerFromJson,
  markerToJson,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type PutOptions,
  type Store,
  type StoreMarker,
  SUPERSEDED_TAG,
} from "./store.ts";

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
    // backpressure, read into one reused buffer (fsutil.ts chunksOf); node:http hands over a new
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
   * Uploads `file` as a new object (`s3_upload.ts`: one PutObject, or a multipart upload aborted
   * on any failure), then counts it only once a HeadObject shows the expected size and SHA-256:
   * a 200 from something that is not the store proves nothing.
   */
  async put(key: string, file: string, meta: BackupMeta, opts: PutOptions = {}): Promise<void> {
    const { signal, ready } = opts;
    ready?.catch(() => {}); // awaited before the object becomes visible; never unhandled
    const Key = this.objectKey(key);
    const sse = this.s.sse === "none" ? {} : {
      ServerSideEncryption: this.s.sse as ServerSideEncryption,
      ...(this.s.sse === "aws:kms" && this.s.kmsKeyId ? { SSEKMSKeyId: this.s.kmsKeyId } : {}),
    };
    const head: UploadHead = {
      Bucket: this.s.bucket,
      Key,
      ContentType: "application/vnd.sqlite3",
      Metadata: metaToRecord(meta),
      ...sse,
    };
    await uploadFile(file, head, {
      client: this.client,
      partSize: this.s.partSize,
      concurrency: this.s.concurrency,
      request: (op, send) => this.mapped(op, send, signal),
      ready,
    }, signal);
    await this.verifyStored(Key, meta, signal);
  }

  /** Throws unless a HeadObject of `Key` shows `meta`'s size and SHA-256. */
  private async verifyStored(Key: string, meta: BackupMeta, signal?: AbortSignal): Promise<void> {
    const res = await this.mapped(
      "HeadObject",
      () => this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key })),
      signal,
      Key,
    );
    const stored = metaFromRecord(res.Metadata ?? {});
    if (res.ContentLength !== meta.size || stored.sha256 !== meta.sha256) {
      throw new TransientError(
        `the store does not hold ${Key} as uploaded: HeadObject shows ` +
          `${res.ContentLength ?? "no"} bytes and ${stored.sha256 ? "another" : "no"} SHA-256, ` +
          `expected ${meta.size} bytes`,
        "lifeboat uploads again under a new key; if it persists, check that the endpoint is an " +
          "S3 store and not a proxy",
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
            // S3 answers at most 1,000 keys a page; some servers (moto) more. Ask for what S3 gives,
            // so every server pages the same way.
            MaxKeys: Math.min(MaxKeys, 1000),
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

  /** Starts a GetObject and returns its body stream (guarded against stalls) and metadata. */
  async open(key: string): Promise<OpenedBackup> {
    const cmd = new GetObjectCommand({ Bucket: this.s.bucket, Key: this.objectKey(key) });
    const res = await this.mapped("GetObject", () => this.reader.send(cmd));
    // The fetch handler's timeout ends at the headers: the body has a stall guard of its own.
    return {
      body: failWhenStalled(bodyOf(res, key), this.s.timeoutMs),
      meta: metaFromRecord(res.Metadata ?? {}),
    };
  }

  /**
   * Downloads the object into the new file `path`: one GetObject of `bytes=0-` (the whole object,
   * and proof the server does ranges); when its first `partSize` bytes arrive slowly, the rest
   * also comes as ranges over `concurrency` connections (ranged_download.ts). Every range must be
   * the one asked for, of the same object (If-Match its ETag).
   */
  async download(key: string, path: string): Promise<DownloadedBackup> {
    const Bucket = this.s.bucket, Key = this.objectKey(key);
    const first = await this.mapped(
      "GetObject",
      () => this.reader.send(new GetObjectCommand({ Bucket, Key, Range: "bytes=0-" })),
    );
    const ranged = sizeFromContentRange(first.ContentRange, 0, Infinity);
    const size = ranged ?? first.ContentLength;
    if (size === undefined) {
      throw new TransientError(
        `GetObject of ${Key} answered without a size`,
        "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
      );
    }
    const fetchRange = async (start: number, end: number, abortSignal: AbortSignal) => {
      const Range = `bytes=${start}-${end - 1}`;
      const cmd = new GetObjectCommand({ Bucket, Key, Range, IfMatch: first.ETag });
      const res = await this.mapped("GetObject", () => this.reader.send(cmd, { abortSignal }));
      if (sizeFromContentRange(res.ContentRange, start, end - 1) !== size) {
        throw new TransientError(
          `GetObject of ${Range} of ${Key} said the object has another size than ${size} bytes`,
          "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
        );
      }
      return bodyOf(res, key);
    };
    const got = await downloadRanges(path, bodyOf(first, key), fetchRange, {
      size,
      probeBytes: this.s.partSize,
      // A server that ignored the Range header cannot be asked for parts.
      concurrency: ranged === undefined ? 1 : this.s.concurrency,
      idleMs: this.s.timeoutMs,
      oneStreamAboveMiBPerS: this.s.oneStreamAboveMiBPerS,
    });
    return { meta: metaFromRecord(first.Metadata ?? {}), ...got };
  }

  /** One HeadObject: the backup's user metadata (sha256, size, …) without its bytes. */
  async describe(key: string): Promise<Partial<BackupMeta>> {
    const Key = this.objectKey(key);
    const res = await this.mapped(
      "HeadObject",
      () => this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key })),
      undefined,
      Key,
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

  /**
   * Runs request `op` (about the object `key`, if one); its failure becomes a one-line error
   * (see s3_errors.ts).
   */
  private async mapped<T>(
    op: S3Operation,
    fn: () => Promise<T>,
    signal?: AbortSignal,
    key?: string,
  ): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (signal?.aborted) throw err;
      throw mapS3Error(err, {
        op,
        bucket: this.s.bucket,
        prefix: this.s.prefix,
        key,
        roleArn: this.s.role?.roleArn,
      });
    }
  }

  private objectKey(key: string): string {
    return this.keyPrefix + checkKey(key);
  }
}

/** The body of a GetObject answer as a web stream; a retryable error when there is none. */
function bodyOf(res: { Body?: { transformToWebStream(): ReadableStream } }, key: string) {
  if (!res.Body) {
    throw new TransientError(
      `GetObject of ${key} answered without a body`,
      "lifeboat retries it; if it persists, check that the endpoint is an S3 store",
    );
  }
  return res.Body.transformToWebStream() as ReadableStream<Uint8Array>;
}

/**
 * The object's total size from a Content-Range that answers `bytes=from-to` (the last range may
 * end earlier); undefined when there is none (the server sent the whole object). Throws
 * (retryably) when it is not the range asked for.
 */
function sizeFromContentRange(header: string | undefined, from: number, to: number) {
  if (header === undefined) return undefined;
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  const [start, end, size] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [];
  if (start !== from || end === undefined || size === undefined || end !== Math.min(to, size - 1)) {
    throw new TransientError(
      `GetObject of bytes=${from}-${to} was answered with Content-Range ${header}`,
      "lifeboat downloads it again; if it persists, check that the endpoint is an S3 store",
    );
  }
  return size;
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
    throw new TransientError(
      `the answer to ListObjectsV2 is not a listing of s3://${bucket}/${prefix} ` +
        `(${problems.join(", ")})`,
      "Check that LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3) is the S3 endpoint",
    );
  }
}
