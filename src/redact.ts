/**
 * The last line of defence for secrets: every line lifeboat prints passes through `redactLine`,
 * which removes the values of the secrets this process knows (secret access key, session
 * tokens, web identity tokens) and anything shaped like a JWT, whatever produced the line, and
 * escapes every control character so that nothing a store answered can drive the terminal.
 *
 * A server or proxy may echo a secret in another encoding than it was given (a session token
 * from a signed URL's query, a header dumped as JSON, a body in base64). So besides the exact
 * values, each run of characters that an encoding can produce (letters, digits, `%+/=_-.!~*'()`
 * and `\`) is decoded the ways it may have been encoded: URL-encoded (either hex case, whichever
 * characters the encoder chose, even twice), JSON-escaped (`\/`, `\u0046`, even twice) and
 * base64 (standard or URL-safe, padded or not, also a longer text holding the secret). A run
 * whose decoded text holds a known secret is replaced whole.
 *
 * Why decode runs rather than match every encoding with one pattern per secret: such a pattern
 * for a 1 KB session token is a regular expression of some 100 KB, which V8 took half a second
 * to compile, again at every credential renewal.
 */

/** Each known secret, and its UTF-8 bytes as one character each (what base64 decodes to). */
const known = new Map<string, string>();
/** Known secrets, longest first: a secret that contains another is removed whole. */
let longestFirst: string[] = [];
/** Shorter values would redact ordinary words; real secrets are far longer. */
const MIN_SECRET_LENGTH = 8;
const JWT = /eyJ[\w-]*\.[\w-]*\.[\w-]*/g;
/** A run of characters that URL-encoding, JSON escapes or base64 can produce. */
const RUN = /[A-Za-z0-9%+/=_\-.!~*'()\\]{8,}/g;
/**
 * What `redactLine` escapes: C0 controls (ESC among them), DEL, C1 controls (U+009B is a CSI on
 * some terminals), the Unicode line separators, and the bidirectional overrides and isolates
 * that make a terminal show text in another order than it is.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** Remembers a secret's value so that no printed line ever contains it; ignores short values. */
export function addSecret(value: string | undefined): void {
  const v = value?.trim();
  if (!v || v.length < MIN_SECRET_LENGTH || known.has(v)) return;
  known.set(v, String.fromCharCode(...new TextEncoder().encode(v)));
  longestFirst = [...known.keys()].sort((a, b) => b.length - a.length);
}

/** Remembers the secrets in the environment: the secret access keys and session tokens. */
export function addSecretsFromEnv(env: Record<string, string | undefined>): void {
  const names = [
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "LIFEBOAT_SECRET_ACCESS_KEY",
    "LIFEBOAT_SESSION_TOKEN",
  ];
  for (const name of names) {
    addSecret(env[name]);
  }
}

/**
 * Returns `line` with every known secret (as is, or in a run that encodes it: see above) and
 * every JWT replaced by a marker, and every control character written as a visible `\uXXXX`;
 * never throws. Inside a JSON string the escape is valid JSON, so JSON lines stay parseable.
 */
export function redactLine(line: string): string {
  let out = line;
  if (known.size > 0) {
    for (const secret of longestFirst) out = out.replaceAll(secret, "[redacted]");
    // A run's trailing backslashes escape what follows it (a JSON line's closing quote): kept.
    out = out.replace(
      RUN,
      (run) => (encodesSecret(run) ? `[redacted]${/\\*$/.exec(run)![0]}` : run),
    );
  }
  return out.replace(JWT, "[redacted token]").replace(CONTROL, escapeControl);
}

function escapeControl(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

/** True when `run`, decoded as URL-encoded, JSON-escaped or base64 text, holds a known secret. */
function encodesSecret(run: string): boolean {
  const texts = new Set([run]);
  // Encoded twice, or one inside the other: decode twice, each way.
  for (let round = 0; round < 2; round++) {
    for (const t of [...texts]) {
      if (t.includes("%")) texts.add(percentDecoded(t));
      if (t.includes("\\")) texts.add(jsonUnescaped(t));
    }
  }
  for (const t of texts) {
    if (longestFirst.some((s) => t.includes(s))) return true;
  }
  for (const t of texts) {
    for (const bytes of base64Decodings(t)) {
      for (const asBytes of known.values()) if (bytes.includes(asBytes)) return true;
    }
  }
  return false;
}

/** `%XX` sequences (either case) as the bytes they stand for, one character each. */
function percentDecoded(t: string): string {
  return t.replace(/%([0-9a-fA-F]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** JSON escapes undone: `\uXXXX` and a backslash before any character, however often escaped. */
function jsonUnescaped(t: string): string {
  return t
    .replace(/\\+u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)))
    .replace(/\\+(.)/g, "$1");
}

/** The shortest base64 text worth decoding: that of the shortest secret, less its ends. */
const MIN_BASE64 = Math.floor((MIN_SECRET_LENGTH * 4) / 3);

/**
 * The bytes (one character each) of each base64 text in `t`, standard or URL-safe, padded or
 * not, decoded from each of the 4 offsets at which its first group may start (a text glued to
 * what precedes it).
 */
function* base64Decodings(t: string): Generator<string> {
  for (const part of t.split(/[^A-Za-z0-9+/_-]+/)) {
    if (part.length < MIN_BASE64) continue;
    const standard = part.replaceAll("-", "+").replaceAll("_", "/");
    for (let offset = 0; offset < 4; offset++) {
      // atob takes base64 without its padding, but not a lone character in the last group.
      const rest = standard.slice(offset);
      try {
        yield atob(rest.length % 4 === 1 ? rest.slice(0, -1) : rest);
      } catch {
        // not base64 from here
      }
    }
  }
}
