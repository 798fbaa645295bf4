/**
 * Whether what a store answered to a write shows the bytes lifeboat sent (#21.4). Content-MD5
 * makes a store that checks it refuse a body damaged in transit; some stores ignore it (moto
 * does) and store the damaged bytes. Where a store's ETag of a single PutObject or an UploadPart
 * is the MD5 of the bytes it stored (AWS S3 without SSE-KMS or SSE-C, radosgw, MinIO, moto),
 * comparing it with the MD5 sent catches that damage before the backup counts.
 *
 * Not every store's ETags are MD5s, and none says so: an ETag that differs is settled once per
 * process by reading the object back (S3Store.put). Bytes intact: this store's ETags are
 * something else, said once, and no longer compared. Bytes different: the attempt fails.
 */
import { logger } from "../log.ts";

const log = logger("store");

/** What an S3 write answered, as far as its ETag's meaning goes. */
export interface WriteAnswer {
  ETag?: string;
  ServerSideEncryption?: string;
  SSECustomerAlgorithm?: string;
}

/** One store's ETag comparisons, for the life of the process. */
export class EtagCheck {
  #md5s = true;

  /**
   * True when `answer`'s ETag is not the MD5 (hex) `md5hex` of the body sent, on a store and an
   * answer whose ETags are MD5s; false when they match or cannot be compared. Never throws.
   */
  differs(answer: WriteAnswer, md5hex: string): boolean {
    if (!this.#md5s || !answer.ETag) return false;
    // SSE-KMS and SSE-C objects have ETags that are not the MD5 of their bytes (AWS documents it).
    if (answer.SSECustomerAlgorithm || answer.ServerSideEncryption?.startsWith("aws:kms")) {
      return false;
    }
    const etag = answer.ETag.replaceAll('"', "").trim().toLowerCase();
    return /^[0-9a-f]{32}$/.test(etag) && etag !== md5hex;
  }

  /** False once this process (or one before it, see `remember`) found ETags that are not MD5s. */
  get md5s(): boolean {
    return this.#md5s;
  }

  /** Takes over what an earlier process of the run learned: ETags are not MD5s. */
  remember(md5s: boolean): void {
    if (md5s === false) this.#md5s = false;
  }

  /** Records that an object read back intact although its ETag differed: one log line, once. */
  notMd5(store: string): void {
    if (!this.#md5s) return;
    this.#md5s = false;
    log.info(
      "{store}'s ETags are not the MD5 of the bytes it stores (an object read back intact): " +
        "lifeboat no longer compares them; restore and the drills still verify every backup's " +
        "SHA-256",
      { event: "etags_not_md5", store },
    );
  }
}
