/**
 * The last line of defence for secrets: every line lifeboat prints passes through `redactLine`,
 * which removes the values of the secrets this process knows (secret access key, session
 * tokens, web identity tokens) and anything shaped like a JWT, whatever produced the line, and
 * escapes every control character so that nothing a store answered can drive the terminal.
 *
 * A server or proxy may echo a secret in another encoding than it was given (a session token
 * from a signed URL's query, a header dumped as JSON, a body in base64), so each known secret is
 * matched as a pattern, not a string:
 *
 * - every character either as itself, URL-encoded (`%2F` or `%2f`, also encoded twice: `%252F`;
 *   whichever characters an encoder chose, so `encodeURIComponent`, RFC 3986 and form encoding
 *   all match) or JSON-escaped (`\/`, `\"`, `\u002F`, with their backslashes escaped again when
 *   the text sits in JSON);
 * - its base64, standard or URL-safe, padded or not, also inside a longer base64 text: for each
 *   of the three offsets at which the secret's bytes can start in a 3-byte group, the characters
 *   that depend only on the secret's bytes (the few at either end mixed with neighbouring bytes
 *   leak at most 6 bits).
 */

const known = new Set<string>();
/** Shorter values would redact ordinary words; real secrets are far longer. */
const MIN_SECRET_LENGTH = 8;
const JWT = /eyJ[\w-]*\.[\w-]*\.[\w-]*/g;
/**
 * What `redactLine` escapes: C0 controls (ESC among them), DEL, C1 controls (U+009B is a CSI on
 * some terminals), the Unicode line separators, and the bidirectional overrides and isolates
 * that make a terminal show text in another order than it is.
 */
// deno-lint-ignore no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** One pattern per known secret, built when the secret is added (lines are many, secrets few). */
let patterns: RegExp[] = [];

/** Remembers a secret's value so that no printed line ever contains it; ignores short values. */
export function addSecret(value: string | undefined): void {
  const v = value?.trim();
  if (!v || v.length < MIN_SECRET_LENGTH || known.has(v)) return;
  known.add(v);
  // Longest first: a secret that contains another is removed whole.
  patterns = [...known].sort((a, b) => b.length - a.length).map(secretPattern);
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
 * Returns `line` with every known secret (in any encoding above) and every JWT replaced by a
 * marker, and every control character written as a visible `\uXXXX`; never throws. Inside a
 * JSON string the escape is valid JSON, so JSON lines stay parseable.
 */
export function redactLine(line: string): string {
  let out = line;
  for (const p of patterns) out = out.replace(p, "[redacted]");
  return out.replace(JWT, "[redacted token]").replace(CONTROL, escapeControl);
}

function escapeControl(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}

const hex2 = (n: number) => n.toString(16).toUpperCase().padStart(2, "0");
/** A hex digit in either case: percent-encoding and `\u` escapes allow both. */
const anyCase = (h: string) => /[A-F]/.test(h) ? `[${h}${h.toLowerCase()}]` : h;
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");

/** The ways one character of a secret may be written: itself, URL-encoded, JSON-escaped. */
function charForms(c: string, alternatives: string[] = [c]): string {
  const forms = alternatives.map(escapeRegExp);
  for (const alt of alternatives) {
    // URL-encoded (its UTF-8 bytes), perhaps twice (%25 is the encoded '%').
    const bytes = [...new TextEncoder().encode(alt)].map(hex2);
    forms.push(bytes.map((h) => `%(?:25)?${anyCase(h[0])}${anyCase(h[1])}`).join(""));
    // JSON's \uXXXX (a character outside the BMP is two such escapes).
    const units = [...alt].flatMap((ch) => {
      const out: string[] = [];
      for (let i = 0; i < ch.length; i++) out.push(ch.charCodeAt(i).toString(16).toUpperCase());
      return out;
    });
    forms.push(
      units.map((u) => `\\\\+u${[...u.padStart(4, "0")].map(anyCase).join("")}`).join(""),
    );
    // A backslash before punctuation: JSON's \/ and \", however often the text was escaped.
    if (!/^[\p{L}\p{N}]$/u.test(alt)) forms.push(`\\\\+${escapeRegExp(alt)}`);
  }
  return `(?:${forms.join("|")})`;
}

/** Base64 alphabets: each character of the standard one, and its URL-safe twin. */
const B64_TWIN: Record<string, string> = { "+": "-", "/": "_" };

/**
 * The characters of `bytes`' base64 that do not depend on neighbouring bytes, when `bytes`
 * starts `offset` bytes into a 3-byte group (0, 1 or 2).
 */
function base64Core(bytes: Uint8Array, offset: number): string {
  const padded = new Uint8Array(offset + bytes.length);
  padded.set(bytes, offset);
  const b64 = btoa(String.fromCharCode(...padded)).replace(/=+$/, "");
  // Leading characters mixed with the offset's filler bytes; a trailing one mixed with the next.
  const skip = [0, 2, 3][offset];
  const trailing = padded.length % 3 === 0 ? 0 : 1;
  return b64.slice(skip, b64.length - trailing);
}

/** One pattern that matches `secret` in every encoding this module redacts. */
function secretPattern(secret: string): RegExp {
  const plain = [...secret].map((c) => charForms(c)).join("");
  const bytes = new TextEncoder().encode(secret);
  const b64 = [0, 1, 2].map((offset) =>
    [...base64Core(bytes, offset)].map((c) => charForms(c, B64_TWIN[c] ? [c, B64_TWIN[c]] : [c]))
      .join("") +
    // The encoding's last character and its padding, when they follow.
    `[A-Za-z0-9+/_-]?(?:=|%3[Dd])*`
  );
  return new RegExp([plain, ...b64].join("|"), "g");
}
