/** Builds the Store that a store URL names. */
import type { S3Options, StoreUrl } from "../config.ts";
import { FileStore } from "./file.ts";
import { S3Store } from "./s3.ts";
import type { Store } from "./store.ts";

/** Returns the store for `url`; makes no request (errors surface on first use). */
export function openStore(url: StoreUrl, s3: S3Options): Store {
  if (url.kind === "file") return new FileStore(url.dir);
  const { keys, ...settings } = s3;
  return new S3Store({
    ...settings,
    bucket: url.bucket,
    prefix: url.prefix,
    ...(keys ? { credentials: keys } : {}),
  });
}
