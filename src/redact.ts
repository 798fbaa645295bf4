/**
 * The last line of defence for secrets: every line lifeboat prints passes through `redactLine`,
 * which removes the values of the secrets this process knows (secret access key, session
 * tokens, web identity tokens) and anything shaped like a JWT, whatever produced the line.
 */

const known = new Set<string>();
/** Shorter values would redact ordinary words; real secrets are far longer. */
const MIN_SECRET_LENGTH = 8;
const JWT = /eyJ[\w-]*\.[\w-]*\.[\w-]*/g;

/** Remembers a secret's value so that no printed line ever contains it; ignores short values. */
export function addSecret(value: string | undefined): void {
  const v = value?.trim();
  if (v && v.length >= MIN_SECRET_LENGTH) known.add(v);
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

/** Returns `line` with every known secret and every JWT replaced by a marker; never throws. */
export function redactLine(line: string): string {
  let out = line;
  for (const secret of [...known].sort((a, b) => b.length - a.length)) {
    out = out.replaceAll(secret, "[redacted]");
  }
  return out.replace(JWT, "[redacted token]");
}
