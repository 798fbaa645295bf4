/**
 * What a store is built from: its URL and the S3 options. The store layer owns these types;
 * config fills them in from flags and the environment, and `open.ts` builds the store.
 */
import type { S3ClientConfig } from "@aws-sdk/client-s3";
import type { RoleSettings } from "./s3_credentials.ts";

/** Where backups live, parsed from `--url`. */
export type StoreUrl =
  | { kind: "file"; dir: string }
  | { kind: "s3"; bucket: string; prefix: string };

/** How logs and errors name the store at `url` (`Store.location`); never throws. */
export function storeLocation(url: StoreUrl): string {
  return url.kind === "file" ? `file://${url.dir}` : `s3://${url.bucket}/${url.prefix}`;
}

/** Access keys given to lifeboat alone (LIFEBOAT_ACCESS_KEY_ID…); never logged. */
export interface StaticKeys {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

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
  /** Upload part size floor in bytes. */
  partSize: number;
  /** How many parts of one upload are in flight at once (LIFEBOAT_S3_CONCURRENCY). */
  concurrency: number;
  /** SDK attempts per request (the SDK backs off between them). */
  maxAttempts: number;
  /** A request with no progress for this long (connecting, or between bytes) fails and is retried. */
  timeoutMs: number;
  /** Tigris: every request asks for global strong consistency (tigris.ts). */
  globalConsistency?: boolean;
  /**
   * Restore's download: a first part faster than this (MiB/s) keeps one stream; default
   * ONE_STREAM_ABOVE_MIB_PER_S. Not a setting of its own: tests pin it to take either path.
   */
  oneStreamAboveMiBPerS?: number;
}

/**
 * S3 settings that come from configuration (bucket and prefix come from the URL); `keys` are
 * lifeboat's own keys, which win over a role and over the SDK's default chain.
 */
export type S3Options = Omit<S3Settings, "bucket" | "prefix" | "credentials"> & {
  keys?: StaticKeys;
};

/** One database of a run: its file and its store name. */
export interface DatabaseSpec {
  /** Absolute path of the SQLite file (symlinks resolved by `resolveDatabases`). */
  path: string;
  /** Its store name: given with `=NAME` or derived from the file name; the label in logs and metrics. */
  name: string;
  /** True when the name was given (`PATH=NAME`); a lone database given without one may take the
   * legacy root layout's backups (store/history.ts). */
  explicit: boolean;
}
