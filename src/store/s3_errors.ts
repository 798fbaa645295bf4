/**
 * Turns AWS SDK failures (S3 and STS) into one-line LifeboatErrors a person can act on.
 * Permanent failures (access denied, missing bucket, expired or rejected credentials) become
 * LifeboatErrors, which `retry()` never retries; server errors and timeouts become
 * TransientErrors that say what failed, where, and what to do, and keep being retried; anything
 * else is returned unchanged. No message built here ever contains a credential: only
 * error codes, bucket/key names, ARNs, token claims (`sub`, `aud`) and redacted server text.
 */
import { operationError, ShownError, TransientError } from "../errors.ts";
import { redactLine } from "../redact.ts";

/** The S3 requests lifeboat makes, each with the IAM action it needs. */
export type S3Operation =
  | "PutObject"
  | "CreateMultipartUpload"
  | "UploadPart"
  | "CompleteMultipartUpload"
  | "ListObjectsV2"
  | "GetObject"
  | "HeadObject"
  | "PutObjectTagging"
  | "CopyObject";

const ACTION: Record<S3Operation, string> = {
  PutObject: "s3:PutObject",
  // A multipart upload's requests are all authorised by s3:PutObject.
  CreateMultipartUpload: "s3:PutObject",
  UploadPart: "s3:PutObject",
  CompleteMultipartUpload: "s3:PutObject",
  ListObjectsV2: "s3:ListBucket",
  GetObject: "s3:GetObject",
  HeadObject: "s3:GetObject",
  PutObjectTagging: "s3:PutObjectTagging",
  CopyObject: "s3:PutObject",
};

/** Where an S3 request went, for the message. */
export interface S3ErrorContext {
  op: S3Operation;
  bucket: string;
  /** Key prefix without trailing slash; "" for the bucket root. */
  prefix: string;
  /** The object's full key, for requests about one object. */
  key?: string;
  /** The role lifeboat assumed, if any (named as the principal to grant access to). */
  roleArn?: string;
}

/** The claims of a web identity token worth showing (never the token itself). */
export interface TokenClaims {
  sub?: string;
  aud?: string;
  iss?: string;
}

/** Where an STS AssumeRoleWithWebIdentity call came from, for the message. */
export interface StsErrorContext {
  roleArn: string;
  /** Where the token came from: a file path or fly's machine API socket. */
  tokenSource: string;
  /** The token's claims, when they could be read. */
  claims?: TokenClaims;
}

/** Returns the error's service code (`AccessDenied`, `NoSuchBucket`, …) or "" when it has none. */
export function errorCode(err: unknown): string {
  if (typeof err !== "object" || err === null) return "";
  const e = err as { Code?: unknown; code?: unknown; name?: unknown };
  for (const c of [e.Code, e.name, e.code]) {
    if (typeof c === "string" && c !== "" && c !== "Error") return c;
  }
  return "";
}

/**
 * Removes every known secret in any encoding (redact.ts) and anything shaped like a JWT, an
 * access key id or a long secret from server text, then shortens it: redacted before it is cut,
 * so a cut never leaves part of a secret that the redactor would no longer recognise.
 */
export function redact(text: string): string {
  return redactLine(text.replace(/\s+/g, " "))
    .replace(/\b(?:AKIA|ASIA)[A-Z0-9]{12,}\b/g, "[redacted key id]")
    .replace(/[A-Za-z0-9+/=]{40,}/g, "[redacted]")
    .slice(0, 300)
    .trim();
}

function serverMessage(err: unknown): string {
  const m = (err as { message?: unknown } | null)?.message;
  return typeof m === "string" && m !== "" && m !== NO_BODY ? `: ${redact(m)}` : "";
}

/** The SDK's message for an error answer without a body (every HEAD answer has none). */
const NO_BODY = "UnknownError";

/** Codes for the HTTP statuses of error answers that carry no code of their own. */
const STATUS_CODE: Record<number, string> = {
  301: "PermanentRedirect",
  400: "BadRequest",
  403: "AccessDenied",
  404: "NotFound",
  500: "InternalError",
  502: "BadGateway",
  503: "ServiceUnavailable",
};

/**
 * The code of an error answer without a body (a HEAD's: the SDK names it `Unknown` or after the
 * status, with the message "UnknownError"), from its HTTP status; "" for any other error. An
 * answer whose body has a `<Code>` but no `<Message>` (radosgw's) also reads "UnknownError": its
 * `Code` is set, and it is the code that counts.
 */
function bodilessCode(err: unknown): string {
  const e = err as
    | { message?: unknown; Code?: unknown; $metadata?: { httpStatusCode?: number } }
    | null;
  const status = e?.$metadata?.httpStatusCode;
  if (e?.message !== NO_BODY || status === undefined) return "";
  if (typeof e.Code === "string" && e.Code !== "") return "";
  return STATUS_CODE[status] ?? (status >= 500 ? "InternalError" : `HTTP${status}`);
}

const is = (code: string, ...names: string[]) =>
  names.some((n) => code === n || code === `${n}Exception`);

/**
 * Returns a LifeboatError (exit 1) for a permanent S3 failure; returns `err` itself, unchanged,
 * when it is already shown (a LifeboatError or TransientError) or when retrying may help.
 */
export function mapS3Error(err: unknown, ctx: S3ErrorContext): unknown {
  if (err instanceof ShownError) return err;
  const code = bodilessCode(err) || errorCode(err);
  const where = ctx.prefix ? `s3://${ctx.bucket}/${ctx.prefix}` : `s3://${ctx.bucket}`;
  const who = ctx.roleArn ? `role ${ctx.roleArn}` : "the credentials lifeboat uses";
  const what = `(${code} on ${ctx.op})`;
  if (is(code, "NoSuchBucket")) {
    return operationError(
      `S3 bucket "${ctx.bucket}" does not exist ${what}`,
      "Create it, or fix the bucket in --url/LIFEBOAT_URL (and LIFEBOAT_S3_ENDPOINT or AWS_ENDPOINT_URL_S3, LIFEBOAT_S3_REGION or AWS_REGION)",
      err,
    );
  }
  if (is(code, "AccessDenied", "AllAccessDisabled")) {
    // AWS names the refused action when it is not the obvious one (kms:GenerateDataKey for SSE-KMS).
    const message = String((err as { message?: unknown }).message ?? "");
    const action = /not authorized to perform:? ([a-z0-9-]+:[A-Za-z0-9]+)/.exec(message)?.[1] ??
      ACTION[ctx.op];
    const resource = action.startsWith("kms:")
      ? "the bucket's KMS key (LIFEBOAT_S3_KMS_KEY_ID)"
      : action === "s3:ListBucket"
      ? `arn:aws:s3:::${ctx.bucket}`
      : `arn:aws:s3:::${ctx.bucket}/${ctx.prefix ? `${ctx.prefix}/` : ""}*`;
    return operationError(
      `S3 denied ${ctx.op} on ${where} (${code}): the ${action} permission is missing`,
      `Allow ${action} on ${resource} for ${who}`,
      err,
    );
  }
  if (is(code, "ExpiredToken", "TokenRefreshRequired")) {
    return operationError(
      `S3 rejected the credentials as expired ${what}`,
      ctx.roleArn
        ? "lifeboat renews role credentials 5 minutes before they expire: check the machine's clock"
        : "Renew AWS_SESSION_TOKEN and its keys (session credentials expire), or use AWS_ROLE_ARN",
      err,
    );
  }
  if (is(code, "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken")) {
    return operationError(
      `S3 rejected the credentials ${what}`,
      `Check LIFEBOAT_ACCESS_KEY_ID/LIFEBOAT_SECRET_ACCESS_KEY, or else AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, for ${where}`,
      err,
    );
  }
  if (is(code, "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraint")) {
    return operationError(
      `S3 bucket "${ctx.bucket}" is not in the configured region ${what}`,
      "Set AWS_REGION to the bucket's region (auto for Tigris and R2)",
      err,
    );
  }
  if (code === "NotFound" && ctx.op === "HeadObject") {
    const object = ctx.key ? `s3://${ctx.bucket}/${ctx.key}` : `an object in ${where}`;
    return new TransientError(
      `S3 has no ${object} (HeadObject answered 404 NotFound)`,
      "lifeboat tries again (a backup just uploaded goes up again under a new key); if it " +
        "persists, the store does not keep what it is sent, or something deletes it: check that " +
        "LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3) is the S3 store itself, and the bucket's " +
        "lifecycle rules",
      err,
    );
  }
  const transient = networkError(err, ctx, where) ?? transientS3Error(err, code, ctx, where);
  if (transient) return transient;
  if (code === "CredentialsProviderError") {
    return operationError(
      `no usable AWS credentials for ${ctx.op}${serverMessage(err)}`,
      "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or AWS_ROLE_ARN (fly.io OIDC)",
      err,
    );
  }
  const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (bodilessCode(err)) {
    // Any other status of an answer without a body: there is nothing more to say than it.
    return operationError(
      `S3 answered ${ctx.op} on ${where} with HTTP ${status} and no explanation (${code})`,
      "A HEAD answer has no body to say why: check the credentials, LIFEBOAT_S3_REGION (or " +
        "AWS_REGION) and LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3)",
      err,
    );
  }
  return err;
}

/** What each network failure says, and what to check: the endpoint is unreachable or cut. */
const NETWORK: Record<string, { what: string; hint: string }> = {
  ECONNREFUSED: {
    what: "nothing listens at",
    hint: "Check LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3): no server accepts connections " +
      "at that address and port. lifeboat retries it, in case the store is still starting",
  },
  ENOTFOUND: {
    what: "the host name does not resolve:",
    hint: "Check LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3), the bucket name (a " +
      "virtual-hosted endpoint puts it in the host name) and the machine's DNS",
  },
  EHOSTUNREACH: {
    what: "no route to",
    hint: "Check LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3) and the machine's network",
  },
  ECONNRESET: {
    what: "the connection was reset by",
    hint: "lifeboat retries it; if it persists, something between lifeboat and the store (a " +
      "proxy, a load balancer, a firewall) or the store itself cuts connections: check the " +
      "network and LIFEBOAT_S3_ENDPOINT (or AWS_ENDPOINT_URL_S3)",
  },
};
NETWORK.EAI_AGAIN = NETWORK.ENOTFOUND;
NETWORK.ENETUNREACH = NETWORK.EHOSTUNREACH;
NETWORK.EPIPE = NETWORK.ECONNRESET;

/**
 * A failure to reach the endpoint or a connection cut under a request, told from a timeout: the
 * SDK names a reset `TimeoutError` too, but keeps the system's code (ECONNRESET, EPIPE).
 */
function networkError(err: unknown, ctx: S3ErrorContext, where: string) {
  const sys = (err as { code?: unknown } | null)?.code;
  const known = typeof sys === "string" ? NETWORK[sys] : undefined;
  if (!known) return undefined;
  const message = String((err as { message?: unknown }).message ?? "");
  // "connect ECONNREFUSED 127.0.0.1:1", "getaddrinfo ENOTFOUND host": the address is the last word.
  const address = new RegExp(`${sys} (\\S+)`).exec(message)?.[1] ?? "the S3 endpoint";
  return new TransientError(
    `S3 ${ctx.op} to ${where} failed: ${known.what} ${address} (${sys})`,
    known.hint,
    err,
  );
}

/** Server trouble and timeouts: the request may well succeed again later. */
function transientS3Error(
  err: unknown,
  code: string,
  ctx: S3ErrorContext,
  where: string,
): TransientError | undefined {
  const text = serverMessage(err);
  if (is(code, "AbortError", "TimeoutError", "RequestTimeout")) {
    return new TransientError(
      `S3 ${ctx.op} on ${where} was aborted: no answer within LIFEBOAT_S3_TIMEOUT (${code}${text})`,
      "lifeboat retries it; if it persists check the network and AWS_ENDPOINT_URL_S3, or raise " +
        "LIFEBOAT_S3_TIMEOUT for a slow link",
      err,
    );
  }
  if (is(code, "SlowDown", "Throttling", "TooManyRequests")) {
    return new TransientError(
      `S3 asked lifeboat to slow down on ${ctx.op} to ${where} (${code}${text})`,
      "lifeboat backs off and retries; if it persists, lengthen LIFEBOAT_INTERVAL or check what " +
        "else writes to the bucket",
      err,
    );
  }
  if (is(code, "InternalError", "ServiceUnavailable", "InternalServerError", "BadGateway")) {
    return new TransientError(
      `the S3 server failed on ${ctx.op} to ${where} (${code}${text})`,
      "It is the server's fault, not lifeboat's: lifeboat retries; if it persists check the " +
        "store's status page and AWS_ENDPOINT_URL_S3",
      err,
    );
  }
  // A 5xx HTML page (a proxy, a crashed server) that the SDK could not parse as S3's XML.
  const message = String((err as { message?: unknown })?.message ?? "");
  if (/Deserialization error|XML parse error/i.test(message)) {
    const status = (err as { $response?: { statusCode?: number } }).$response?.statusCode;
    return new TransientError(
      `the S3 endpoint answered ${ctx.op} on ${where} with something that is not an S3 answer` +
        `${status ? ` (HTTP ${status})` : ""}, an HTML page perhaps`,
      "lifeboat retries it; if it persists, check that LIFEBOAT_S3_ENDPOINT (or " +
        "AWS_ENDPOINT_URL_S3) is the S3 endpoint itself and that the server is healthy",
      err,
    );
  }
  return undefined;
}

/**
 * Returns a LifeboatError (exit 1) for a permanent STS AssumeRoleWithWebIdentity failure;
 * returns `err` itself, unchanged, when it is already shown or retrying may help.
 */
export function mapStsError(err: unknown, ctx: StsErrorContext): unknown {
  if (err instanceof ShownError) return err;
  const code = errorCode(err);
  const claims = ctx.claims ?? {};
  const shown = [
    claims.sub !== undefined ? `sub "${claims.sub}"` : "",
    claims.aud !== undefined ? `aud "${claims.aud}"` : "",
  ].filter(Boolean).join(", ");
  const token = shown ? `; the token has ${shown}` : "";
  if (is(code, "AccessDenied")) {
    return operationError(
      `STS denied AssumeRoleWithWebIdentity for ${ctx.roleArn} (AccessDenied${token})`,
      "Check the role's trust policy: it must allow this app's sub " +
        '("oidc.fly.io/<org>:sub" StringLike "<org>:<app>:*") with aud sts.amazonaws.com',
      err,
    );
  }
  if (is(code, "ExpiredToken")) {
    return operationError(
      `STS rejected the web identity token from ${ctx.tokenSource} as expired (${code})`,
      "fly.io rewrites the token about every 9 minutes: check that the file is being renewed " +
        "and that the machine's clock is right",
      err,
    );
  }
  if (is(code, "InvalidIdentityToken", "IDPRejectedClaim")) {
    return operationError(
      `STS rejected the web identity token from ${ctx.tokenSource} ` +
        `(${code}${token}${serverMessage(err)})`,
      "Add https://oidc.fly.io/<org> as an IAM OIDC identity provider with audience " +
        "sts.amazonaws.com, and trust it in the role",
      err,
    );
  }
  if (is(code, "RegionDisabled")) {
    return operationError(
      `STS is not enabled in this region for the account of ${ctx.roleArn} (${code})`,
      "Activate STS for the region in IAM account settings, or set AWS_REGION to another region",
      err,
    );
  }
  return err;
}
