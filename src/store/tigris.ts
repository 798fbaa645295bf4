/**
 * Tigris (the store `fly storage create` makes): a bucket of its default, global location type is
 * strongly consistent within one region and only eventually consistent across regions
 * (tigrisdata.com/docs/objects/consistency). A machine that restores in another region than the
 * one that wrote could list a stale view: miss the newest backup and restore an older one, or
 * miss every backup and the marker and start empty. Tigris gives global strong consistency to
 * the requests that carry `X-Tigris-Consistent: true`, the writes and the reads after them.
 */
import type { S3Client } from "@aws-sdk/client-s3";

/** The header, as sent (lower case, as the SDK sends every header). */
export const TIGRIS_CONSISTENT = "x-tigris-consistent";

/** Whether `endpoint` is Tigris's (fly.storage.tigris.dev inside Fly, t3.storage.dev outside). */
export function isTigrisEndpoint(endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  try {
    return /(^|\.)(tigris\.dev|storage\.dev)$/.test(new URL(endpoint).hostname.toLowerCase());
  } catch {
    return false;
  }
}

/**
 * Makes every request of `client` carry `X-Tigris-Consistent: true`, added before signing (so it
 * is signed with the rest). Never throws.
 */
export function askGlobalConsistency(client: S3Client): void {
  client.middlewareStack.add(
    (next) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (request.headers) request.headers[TIGRIS_CONSISTENT] = "true";
      return next(args);
    },
    { step: "build", name: "tigrisGlobalConsistency" },
  );
}
