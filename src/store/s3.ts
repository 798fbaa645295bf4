/** A store under an S3 prefix (AWS or any S3-compatible endpoint). */
import {
  CopyObjectCommand,
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
import { operationError, TransientError } from "../errors.ts";
import { hashStream } from "../fsutil.ts";
import { logger } from "../log.ts";
import { Phases } from "../phases.ts";
import { checkKey, isKeptKey, MARKER_NAME, parseKey, parseSeal } from "./keys.ts";
import { EtagCheck } from "./etag_check.ts";
import { downloadRanges } from "./ranged_download.ts";
import { roleCredentials } from "./s3_credentials.ts";
import { failWhenStalled } from "./stall.ts";
import { errorCode, mapS3Error, type S3Operation } from "./s3_errors.ts";
import { askGlobalConsistency } from "./tigris.ts";
import { md5, requireETag, signBodiesByMd5, uploadFile, type UploadHead } from "./s3_upload.ts";
import type { S3Settings } from "./settings.ts";
import {
  type BackupInfo,
  type BackupMeta,
  type Described,
  type DownloadedBackup,
  type Listing,
  MAX_LIST_PAGES,
  MAX_SMALL_OBJECT_BYTES,
  metaFromRecord,
  metaToRecord,
  type OpenedBackup,
  type PutOptions,
  type SmallObject,
  type Store,
  type StoreMemory,
  type WriteCondition,
  WriteConflict,
} from "./store.ts";

const log = logger("store");
/** S3 copies at most 5 GiB in one CopyObject. */
const MAX_COPY_BYTES = 5 * 1024 ** 3;

/** Backups as objects under `s3://bucket/prefix/`. */
export class S3Store implements Store {
  readonly location: string;
  /** The SDK client, exposed so tests can count requests with middleware. */
  readonly client: S3Client;
  /** The client for GetObject: Deno's fetch underneath, for byte streams (see constructor). */
  readonly reader: S3Client;
  private readonly keyPrefix: string;
  /** Requests sent through `mapped` (see Store.requests). */
  #requests = 0;
  /** Whether the store checks If-None-Match / If-Match (see Store.conditionalWrites). */
  #conditional: "yes" | "no" | "unknown" = "unknown";
  /** Whether this store's ETags are MD5s, learned once per process (etag_check.ts). */
  readonly #etags = new EtagCheck();

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
    signBodiesByMd5(this.client);
    if (s.globalConsistency) {
      for (const c of [this.client, this.reader]) {
        askGlobalConsistency(c);
      }
    }
  }

  /** See Store.requests: every request sent through `mapped`, SDK retries not counted. */
  requests(): number {
    return this.#requests;
  }

  /** See Store.memory. */
  memory(): StoreMemory {
    const conditional = this.#conditional === "unknown" ? undefined : this.#conditional;
    return { ...(conditional ? { conditional } : {}), etagsAreMd5: this.#etags.md5s };
  }

  /** See Store.remember. */
  remember(m: unknown): void {
    const { conditional, etagsAreMd5 } = (m ?? {}) as StoreMemory;
    if (conditional === "yes" || conditional === "no") this.#conditional = conditional;
    if (etagsAreMd5 === false) this.#etags.remember(false);
  }

  /** See Store.conditionalWrites. */
  conditionalWrites(): "yes" | "no" | "unknown" {
    return this.#conditional;
  }

  /**
   * Uploads `file` as a new object (`s3_upload.ts`: one PutObject, or a multipart upload aborted
   * on any failure) with `If-None-Match: *`, then counts it only once a HeadObject shows the
   * expected size and SHA-256: a 200 from something that is not the store proves nothing. When
   * an ETag was not the MD5 sent, it counts only once the object, read back, has that SHA-256
   * (etag_check.ts); else it throws (retryable) and the backup goes up again under a new key.
   */
  async put(key: string, file: string, meta: BackupMeta, opts: PutOptions = {}): Promise<void> {
    const { signal, ready, phases = new Phases() } = opts;
    ready?.catch(() => {}); // awaited before the object becomes visible; never unhandled
    const Key = this.objectKey(key);
    const head: UploadHead = {
      Bucket: this.s.bucket,
      Key,
      ContentType: "application/vnd.sqlite3",
      Metadata: metaToRecord(meta),
      ...this.sse(),
    };
    const uploaded = await phases.time("upload", () =>
      this.conditionally(
        `s3://${this.s.bucket}/${Key}`,
        (ifNoneMatch) =>
          uploadFile(file, head, {
            client: this.client,
            partSize: this.s.partSize,
            concurrency: this.s.concurrency,
            request: (op, send) => this.mapped(op, send, signal, Key),
            ready,
            ifNoneMatch,
            etags: this.#etags,
          }, signal),
      ));
    await phases.time("verify", () => this.verifyStored(Key, meta, signal));
    if (uploaded.etagDiffers) await phases.time("readback", () => this.readBack(Key, meta));
  }

  /**
   * Reads `Key` back whole and hashes it: resolves when it holds `meta`'s bytes (then this
   * store's ETags are not MD5s, etag_check.ts); throws a retryable error when it holds others.
   */
  private async readBack(Key: string, meta: BackupMeta): Promise<void> {
    const res = await this.mapped(
      "GetObject",
      () => this.reader.send(new GetObjectCommand({ Bucket: this.s.bucket, Key })),
      undefined,
      Key,
    );
    const got = await hashStream(failWhenStalled(bodyOf(res, Key), this.s.timeoutMs));
    if (got.sha256 === meta.sha256 && got.size === meta.size) {
      this.#etags.notMd5(this.location);
      return;
    }
    throw new TransientError(
      `the store holds different bytes than were sent for ${Key}: its ETag was not the MD5 ` +
        `sent, and read back its SHA-256 differs (damaged on the way, by a store that ignores ` +
        `Content-MD5)`,
      "lifeboat uploads again under a new key; restore and the drills never take the damaged one",
    );
  }

  /**
   * Runs a write that sends its condition when `conditional`: a 412 becomes WriteConflict; a
   * store that answers 501 NotImplemented to a condition is told once (one log line) and written
   * to without conditions from then on, by this process.
   */
  private async conditionally<T>(
    what: string,
    write: (conditional: boolean) => Promise<T>,
  ): Promise<T> {
    const conditional = this.#conditional !== "no";
    try {
      const out = await write(conditional);
      if (conditional) this.#conditional = "yes";
      return out;
    } catch (err) {
      const code = errorCode(err) || errorCode((err as { cause?: unknown })?.cause);
      if (conditional && code === "PreconditionFailed") throw new WriteConflict(what, err);
      if (!conditional || code !== "NotImplemented" || this.#conditional === "yes") throw err;
      this.#conditional = "no";
      log.warn(
        "{store} does not implement conditional writes (If-None-Match): lifeboat writes without " +
          "them; its keys are unique, so only a deliberate overwrite can replace a backup",
        { event: "conditional_writes_unsupported", store: this.location },
      );
      return await write(false);
    }
  }

  /** The server-side encryption headers of every object lifeboat writes. */
  private sse() {
    if (this.s.sse === "none") return {};
    return {
      ServerSideEncryption: this.s.sse as ServerSideEncryption,
      ...(this.s.sse === "aws:kms" && this.s.kmsKeyId ? { SSEKMSKeyId: this.s.kmsKeyId } : {}),
    };
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
   * The backups directly under `dir` (see Store.list): ListObjectsV2 with a delimiter, pages of
   * 1,000 keys, at most MAX_LIST_PAGES of them, stopping once `limit` backups (and the seal of
   * the last one, which sorts right after it) were seen. Every answer is validated.
   */
  async list(dir: string, limit: number): Promise<Listing> {
    const prefix = this.keyPrefix + dir;
    const backups: BackupInfo[] = [];
    const seals = new Map<string, string>();
    const others: string[] = [];
    let foreign = 0, pages = 0, token: string | undefined;
    do {
      const page = await this.mapped("ListObjectsV2", () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.s.bucket,
            Prefix: prefix,
            Delimiter: "/",
            // S3 answers at most 1,000 keys a page, some servers (moto) more: ask for what S3
            // gives, so that every server pages the same way.
            MaxKeys: 1000,
            ContinuationToken: token,
          }),
        ));
      pages++;
      checkListing(page, this.s.bucket, prefix);
      for (const obj of page.Contents ?? []) {
        const key = obj.Key!.slice(this.keyPrefix.length);
        const parsed = parseKey(key);
        const seal = parsed ? undefined : parseSeal(key);
        if (parsed) {
          const { ms, machine, place } = parsed;
          backups.push({ key, createdAt: new Date(ms), machine, place, size: obj.Size });
        } else if (seal) seals.set(seal.key, seal.sha256);
        else {
          others.push(key);
          if (key !== MARKER_NAME && !isKeptKey(key)) foreign++;
        }
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && backups.length <= limit && pages < MAX_LIST_PAGES);
    for (const b of backups) {
      const sha256 = seals.get(b.key);
      if (sha256) b.sha256 = sha256;
    }
    return {
      backups: backups.slice(0, limit),
      foreign,
      others,
      complete: token === undefined || backups.length > limit,
    };
  }

  /** The common prefixes directly under `dir` (see Store.dirs), validated like every listing. */
  async dirs(dir: string): Promise<string[]> {
    const prefix = this.keyPrefix + dir;
    const out: string[] = [];
    let token: string | undefined, pages = 0;
    do {
      const page = await this.mapped("ListObjectsV2", () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.s.bucket,
            Prefix: prefix,
            Delimiter: "/",
            MaxKeys: 1000,
            ContinuationToken: token,
          }),
        ));
      pages++;
      checkListing(page, this.s.bucket, prefix);
      for (const p of page.CommonPrefixes ?? []) {
        if (p.Prefix?.startsWith(prefix)) out.push(p.Prefix.slice(prefix.length, -1));
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && pages < MAX_LIST_PAGES);
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

  /** One HeadObject: the object's user metadata and size; undefined on a 404. */
  async describe(key: string): Promise<Described | undefined> {
    const Key = this.objectKey(key);
    try {
      const res = await this.mapped(
        "HeadObject",
        () => this.client.send(new HeadObjectCommand({ Bucket: this.s.bucket, Key })),
        undefined,
        Key,
      );
      return { meta: metaFromRecord(res.Metadata ?? {}), size: res.ContentLength };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Reads `PREFIX/key` with one GetObject of its first MAX_SMALL_OBJECT_BYTES; undefined only
   * on the store's own "no such key" answer; a bigger object throws (exit 1), its body unread.
   */
  async readSmall(key: string): Promise<SmallObject | undefined> {
    const Key = this.keyPrefix + key;
    let res;
    try {
      res = await this.mapped("GetObject", () =>
        this.client.send(
          new GetObjectCommand({
            Bucket: this.s.bucket,
            Key,
            Range: `bytes=0-${MAX_SMALL_OBJECT_BYTES - 1}`,
          }),
        ));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const total = /\/(\d+)$/.exec(res.ContentRange ?? "")?.[1];
    const size = total !== undefined ? Number(total) : res.ContentLength ?? 0;
    if (size > MAX_SMALL_OBJECT_BYTES) {
      await res.Body?.transformToWebStream().cancel().catch(() => {});
      throw operationError(
        `s3://${this.s.bucket}/${Key} is ${size} bytes, more than the ` +
          `${MAX_SMALL_OBJECT_BYTES / 1024} KiB lifeboat reads of it: lifeboat did not write it`,
        "Nothing was changed. Check that the URL names lifeboat's store; move the object away",
      );
    }
    return { text: (await res.Body?.transformToString()) ?? "", etag: res.ETag ?? "" };
  }

  /** Writes `PREFIX/key` with one PutObject under `cond` (see Store.writeSmall). */
  async writeSmall(key: string, text: string, cond: WriteCondition): Promise<string> {
    const Key = this.keyPrefix + key;
    const Body = new TextEncoder().encode(text);
    const res = await this.conditionally(
      `s3://${this.s.bucket}/${Key}`,
      (conditional) =>
        this.mapped("PutObject", () =>
          this.client.send(
            new PutObjectCommand({
              Bucket: this.s.bucket,
              Key,
              Body,
              ContentMD5: md5(Body),
              ContentType: "application/json",
              ...(conditional && cond.ifNoneMatch ? { IfNoneMatch: "*" } : {}),
              ...(conditional && cond.ifMatch ? { IfMatch: cond.ifMatch } : {}),
            }),
          )),
    );
    return requireETag(res.ETag, `PutObject of ${Key}`);
  }

  /** A server-side CopyObject of `from` to `to`, its metadata replaced by `meta`; ≤ 5 GiB. */
  async copy(from: string, to: string, meta: BackupMeta): Promise<void> {
    if (meta.size > MAX_COPY_BYTES) {
      throw operationError(
        `cannot keep a copy of ${from}: ${meta.size} bytes is more than one CopyObject takes`,
        "A database over 5 GiB needs LIFEBOAT_RETENTION=tags (a store with tag lifecycle rules)",
      );
    }
    const source = this.objectKey(from).split("/").map(encodeURIComponent).join("/");
    await this.mapped("CopyObject", () =>
      this.client.send(
        new CopyObjectCommand({
          Bucket: this.s.bucket,
          Key: this.objectKey(to),
          CopySource: `${this.s.bucket}/${source}`,
          MetadataDirective: "REPLACE",
          Metadata: metaToRecord(meta),
          ContentType: "application/vnd.sqlite3",
          ...this.sse(),
        }),
      ));
  }

  /** PutObjectTagging: replaces `key`'s tags with `tags`. */
  async tag(key: string, tags: Record<string, string>): Promise<void> {
    const Key = this.objectKey(key);
    const TagSet = Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
    await this.mapped("PutObjectTagging", () =>
      this.client.send(
        new PutObjectTaggingCommand({ Bucket: this.s.bucket, Key, Tagging: { TagSet } }),
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
    this.#requests++;
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

/**
 * True for the store's own answer that an object is not there (404, NoSuchKey, NotFound), also
 * once mapped to a shown error (its cause). A missing bucket is mapped to its own error first.
 */
function isNotFound(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 3; depth++) {
    const x = e as { $metadata?: { httpStatusCode?: number }; cause?: unknown };
    const code = errorCode(e);
    // Before the status: a missing bucket is a 404 too, and must never read as "no object".
    if (code === "NoSuchBucket") return false;
    if (code === "NoSuchKey" || code === "NotFound" || x.$metadata?.httpStatusCode === 404) {
      return true;
    }
    e = x.cause;
  }
  return false;
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
