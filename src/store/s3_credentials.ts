/**
 * Role credentials for S3: AssumeRoleWithWebIdentity with fly.io's OIDC token, renewed before
 * they expire. The token is read afresh at every renewal (fly rewrites the file about every
 * 9 minutes and a token lives about 10), from the token file through the SDK's `fromTokenFile`,
 * or, when that file is missing, minted over fly's machine API socket. No token, key or session
 * token is ever logged or kept beyond the one STS call that needs it.
 */
import { fromTokenFile, fromWebToken } from "@aws-sdk/credential-providers";
import { isFinal, oneLine, operationError, TransientError } from "../errors.ts";
import { logger, setupLevel } from "../log.ts";
import { addSecret } from "../redact.ts";
import { mapStsError, redact, type TokenClaims } from "./s3_errors.ts";

const log = logger("credentials");

/** The audience fly.io's token must carry for AWS STS. */
export const STS_AUDIENCE = "sts.amazonaws.com";
/** Credentials are renewed this long before they expire (the AWS SDK's own margin). */
export const RENEW_BEFORE_MS = 5 * 60_000;
/** Past renewal time, credentials that still have this long to live are used if renewal fails. */
const STILL_USABLE_MS = 30_000;
const MINT_TIMEOUT_MS = 10_000;

/** The role to assume and where its token comes from; validated by config. */
export interface RoleSettings {
  /** IAM role ARN (`arn:aws:iam::123456789012:role/name`). */
  roleArn: string;
  /** STS RoleSessionName (2–64 characters of letters, digits and `+=,.@_-`). */
  sessionName: string;
  /** File holding the OIDC token (AWS_WEB_IDENTITY_TOKEN_FILE); re-read at every renewal. */
  tokenFile: string;
  /** fly.io's machine API socket, used to mint a token when `tokenFile` does not exist. */
  flyApiSocket: string;
  /** Region for STS (a real AWS region even when S3's is `auto`). */
  stsRegion: string;
  /** Custom STS endpoint (AWS_ENDPOINT_URL_STS); undefined for the SDK's default. */
  stsEndpoint?: string;
}

/** AWS credentials as the SDK uses them. */
export interface Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** An SDK credential provider. */
export type CredentialProvider = (options?: { forceRefresh?: boolean }) => Promise<Credentials>;

/** A provider that caches its credentials; `memoized` tells the SDK not to wrap it again. */
export type MemoizedProvider = CredentialProvider & { memoized: true };

/** The STS call, replaceable in tests (the SDK's `roleAssumerWithWebIdentity`). */
export type RoleAssumer = (params: {
  RoleArn: string;
  RoleSessionName?: string;
  WebIdentityToken: string;
}) => Promise<Credentials>;

/** What role credentials use from outside, injectable for tests. */
export interface RoleDeps {
  /** Milliseconds since the epoch (defaults to Date.now). */
  now?: () => number;
  /** Replaces the STS call; undefined uses the SDK's STS client. */
  assume?: RoleAssumer;
}

/**
 * Returns cached credentials from `fetch`, fetching again once they are within `renewBeforeMs`
 * of expiry (concurrent callers share one fetch). If a renewal fails while the cached
 * credentials still have 30 s to live, those are returned and a warning is logged; otherwise
 * the renewal's error is thrown as is.
 */
export function renewing(
  fetch: () => Promise<Credentials>,
  now: () => number = Date.now,
  renewBeforeMs: number = RENEW_BEFORE_MS,
): MemoizedProvider {
  let current: Credentials | undefined;
  let pending: Promise<Credentials> | undefined;
  const left = (c: Credentials) => (c.expiration?.getTime() ?? Infinity) - now();
  const renew = () =>
    pending ??= fetch()
      .then((c) => (current = c))
      .finally(() => (pending = undefined));
  const provider = async (options?: { forceRefresh?: boolean }) => {
    const force = options?.forceRefresh === true;
    if (current && !force && left(current) > renewBeforeMs) return current;
    try {
      return await renew();
    } catch (err) {
      if (!current || force || left(current) <= STILL_USABLE_MS) throw err;
      log.warn(
        "could not renew role credentials ({error}); the current ones last until {expires}",
        {
          event: "credentials_renewal_failed",
          error: redact(oneLine(err)),
          expires: current.expiration?.toISOString(),
        },
      );
      return current;
    }
  };
  return Object.assign(provider, { memoized: true as const });
}

/**
 * Returns a provider of credentials for `s.roleArn`, renewed 5 minutes before they expire, each
 * time with a freshly read token. Throws a one-line LifeboatError (exit 1) for a missing or
 * empty token file, a refused token mint, or a permanent STS refusal; transient failures are
 * thrown unchanged so callers retry.
 */
export function roleCredentials(s: RoleSettings, deps: RoleDeps = {}): MemoizedProvider {
  let renewals = 0;
  return renewing(async () => {
    const { credentials, source } = await assumeRole(s, deps.assume);
    addSecret(credentials.secretAccessKey);
    addSecret(credentials.sessionToken);
    const first = renewals++ === 0;
    const text = "{what} role {role} as session {session} with the token from {source}; " +
      "credentials valid until {expires}";
    const props = {
      event: first ? "role_assumed" : "role_renewed",
      what: first ? "assumed" : "renewed credentials for",
      role: s.roleArn,
      session: s.sessionName,
      source,
      expires: credentials.expiration?.toISOString() ?? "never",
    };
    if (first && setupLevel() === "info") log.info(text, props);
    else log.debug(text, props);
    return credentials;
  }, deps.now);
}

/** One AssumeRoleWithWebIdentity with a token read just now; returns where the token came from. */
async function assumeRole(
  s: RoleSettings,
  assume: RoleAssumer | undefined,
): Promise<{ credentials: Credentials; source: string }> {
  const init = {
    roleArn: s.roleArn,
    roleSessionName: s.sessionName,
    clientConfig: { region: s.stsRegion, ...(s.stsEndpoint ? { endpoint: s.stsEndpoint } : {}) },
    roleAssumerWithWebIdentity: assume,
  };
  const file = await tokenFileState(s.tokenFile);
  if (file === "ok") {
    addSecret(await Deno.readTextFile(s.tokenFile).catch(() => ""));
    try {
      const credentials = await fromTokenFile({ ...init, webIdentityTokenFile: s.tokenFile })();
      return { credentials, source: s.tokenFile };
    } catch (err) {
      const claims = await claimsOfFile(s.tokenFile);
      throw mapStsError(err, { roleArn: s.roleArn, tokenSource: s.tokenFile, claims });
    }
  }
  if (file === "empty") {
    throw operationError(
      `the web identity token file ${s.tokenFile} is empty`,
      "fly.io writes it when AWS_ROLE_ARN is set in fly.toml [env]; elsewhere put an OIDC token " +
        "with audience sts.amazonaws.com in AWS_WEB_IDENTITY_TOKEN_FILE",
    );
  }
  if (!(await exists(s.flyApiSocket))) {
    throw operationError(
      `the web identity token file ${s.tokenFile} does not exist, ` +
        `and there is no fly.io machine API socket at ${s.flyApiSocket} to mint a token`,
      "On fly.io set AWS_ROLE_ARN in fly.toml [env] (fly then writes /.fly/oidc_token); " +
        "elsewhere set AWS_WEB_IDENTITY_TOKEN_FILE to a file holding an OIDC token",
    );
  }
  const source = `the fly.io machine API at ${s.flyApiSocket}`;
  const token = await mintFlyToken(s.flyApiSocket);
  addSecret(token);
  const claims = tokenClaims(token);
  try {
    const credentials = await fromWebToken({ ...init, webIdentityToken: token })();
    return { credentials, source };
  } catch (err) {
    throw mapStsError(err, { roleArn: s.roleArn, tokenSource: source, claims });
  }
}

async function tokenFileState(path: string): Promise<"ok" | "missing" | "empty"> {
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) {
      throw operationError(
        `the web identity token file ${path} is not a file`,
        "Point AWS_WEB_IDENTITY_TOKEN_FILE at the token file (fly.io: /.fly/oidc_token)",
      );
    }
    return st.size === 0 ? "empty" : "ok";
  } catch (err) {
    if (isFinal(err)) throw err;
    if (err instanceof Deno.errors.NotFound) return "missing";
    throw operationError(
      `cannot read the web identity token file ${path}: ${describe(err)}`,
      "Check AWS_WEB_IDENTITY_TOKEN_FILE and the file's permissions",
      err,
    );
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** What to do when fly.io's machine API cannot mint a token for now. */
const FLY_API_HINT = "lifeboat retries; outside fly.io set AWS_WEB_IDENTITY_TOKEN_FILE to a " +
  "token file (or LIFEBOAT_FLY_API_SOCKET to the API's socket)";

/**
 * Asks fly.io's machine API (a unix socket) for a fresh OIDC token with audience
 * sts.amazonaws.com. Throws a LifeboatError when the API refuses (4xx) or answers with nothing;
 * throws a TransientError (worth retrying) when the socket cannot be reached or answers 5xx.
 */
export async function mintFlyToken(socket: string): Promise<string> {
  using client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  let res: Response;
  try {
    res = await fetch("http://localhost/v1/tokens/oidc", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ aud: STS_AUDIENCE }),
      client,
      signal: AbortSignal.timeout(MINT_TIMEOUT_MS),
    });
  } catch (err) {
    throw new TransientError(
      `cannot reach the fly.io machine API at ${socket}: ${describe(err)}`,
      FLY_API_HINT,
      err,
    );
  }
  const body = (await res.text()).trim();
  if (!res.ok) {
    const text = `the fly.io machine API at ${socket} refused to mint an OIDC token ` +
      `(HTTP ${res.status}${body ? `: ${redact(body)}` : ""})`;
    if (res.status >= 500) throw new TransientError(text, FLY_API_HINT);
    throw operationError(text, "Check that the app may use fly.io OIDC tokens (fly.io docs)");
  }
  if (body === "") {
    throw operationError(
      `the fly.io machine API at ${socket} returned an empty OIDC token`,
      "Set AWS_WEB_IDENTITY_TOKEN_FILE to a token file instead",
    );
  }
  return body;
}

/** Returns the `sub`, `aud` and `iss` claims of a JWT (unverified); {} when it is not one. */
export function tokenClaims(token: string): TokenClaims {
  try {
    const part = token.trim().split(".")[1] ?? "";
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(new TextDecoder().decode(
      Uint8Array.from(atob(b64 + "=".repeat((4 - b64.length % 4) % 4)), (c) => c.charCodeAt(0)),
    ));
    const str = (v: unknown) =>
      typeof v === "string" ? v : Array.isArray(v) ? v.map(String).join(",") : undefined;
    return { sub: str(json.sub), aud: str(json.aud), iss: str(json.iss) };
  } catch {
    return {};
  }
}

async function claimsOfFile(path: string): Promise<TokenClaims> {
  try {
    return tokenClaims(await Deno.readTextFile(path));
  } catch {
    return {};
  }
}

function describe(err: unknown): string {
  const e = err instanceof Error ? err : new Error(String(err));
  return redact(`${e.name}: ${e.message}`);
}
