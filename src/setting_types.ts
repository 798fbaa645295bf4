/**
 * The kinds of value a setting holds (a duration within bounds, a whole number, one of a few
 * words, an http(s) URL, …): how each is parsed, what it accepts as help and README say it, and
 * how a value is written. Every parser throws a config error (exit 2) naming the variable or
 * flag and the fix; none echoes a value that may be a secret.
 */
import { exactDuration, parseDuration } from "./duration.ts";
import { configError } from "./errors.ts";

/** One kind of value: its parser, what it accepts (Markdown) and how a value is written. */
export interface ValueType<T> {
  /**
   * Parses `raw` (already trimmed, never empty) given as `name` (a variable or a flag);
   * throws a config error naming `name` and the fix.
   */
  parse(raw: string, name: string): T;
  /** What is accepted, in Markdown (`1s` to `24h`, `json` or `text`); "" when anything goes. */
  accepts: string;
  /** A value as a person would write it, in Markdown (for defaults). */
  show(value: T): string;
}

const code = (s: string | number) => `\`${s}\``;

/** `n` with a comma between each group of three digits (as en-US writes it; no ICU: issue #22). */
const grouped = (n: number) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");

/** Any text (a path, a name); `accepts` says what it should be. Never throws. */
export function text(accepts = ""): ValueType<string> {
  return { parse: (raw) => raw, accepts, show: code };
}

/** A whole number from `min` to `max`. */
export function wholeNumber(min: number, max: number): ValueType<number> {
  const range = `${grouped(min)} to ${grouped(max)}`;
  return {
    parse(raw, name) {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < min || n > max) {
        throw configError(
          `${name}=${raw} is not valid`,
          `Use a whole number from ${min} to ${max}`,
        );
      }
      return n;
    },
    accepts: range,
    show: code,
  };
}

/** A duration (`30s`, `5m`, `1h30m`, `250ms`) from `minMs` to `maxMs`, in milliseconds. */
export function duration(minMs: number, maxMs: number): ValueType<number> {
  return {
    parse(raw, name) {
      const ms = parseDuration(raw);
      if (ms === undefined) {
        throw configError(
          `${name} ${JSON.stringify(raw)} is not a duration`,
          "Use e.g. 30s, 5m or 1h",
        );
      }
      if (ms < minMs) {
        throw configError(`${name} ${raw} is too short`, `Use at least ${exactDuration(minMs)}`);
      }
      if (ms > maxMs) {
        throw configError(`${name} ${raw} is too long`, `Use at most ${exactDuration(maxMs)}`);
      }
      return ms;
    },
    accepts: `${code(exactDuration(minMs))} to ${code(exactDuration(maxMs))}`,
    show: (ms) => code(exactDuration(ms)),
  };
}

/** A duration as `duration` parses it, or `0` / `off`: 0 (the thing it paces is off). */
export function durationOrOff(minMs: number, maxMs: number): ValueType<number> {
  const d = duration(minMs, maxMs);
  return {
    parse: (raw, name) => /^(0|off)$/i.test(raw.trim()) ? 0 : d.parse(raw, name),
    accepts: `${d.accepts}, or \`off\``,
    show: (ms) => ms === 0 ? code("off") : d.show(ms),
  };
}

/**
 * One of `values` (any case; the value returned is spelled as in `values`). `aliases` are
 * accepted too but not advertised (`warn` for `warning`).
 */
export function oneOf<T extends string>(
  values: readonly T[],
  aliases: Record<string, NoInfer<T>> = {},
): ValueType<T> {
  return {
    parse(raw, name) {
      const v = raw.toLowerCase();
      const hit = values.find((a) => a.toLowerCase() === v) ?? aliases[v];
      if (!hit) {
        throw configError(`${name}=${raw} is not valid`, `Use one of: ${values.join(", ")}`);
      }
      return hit;
    },
    accepts: values.map(code).join(", "),
    show: code,
  };
}

const YES = ["true", "1", "yes"];
const NO = ["false", "0", "no"];

/** A yes/no switch: `true`, `1`, `yes` or `false`, `0`, `no` (any case). */
export function yesNo(): ValueType<boolean> {
  const words = oneOf([...YES, ...NO]);
  return {
    parse: (raw, name) => YES.includes(words.parse(raw, name)),
    accepts: "`true`/`false`, `1`/`0`, `yes`/`no`",
    show: (v) => code(String(v)),
  };
}

/** Anything not blank counts as set (RELEASE_COMMAND: fly.io sets it to 1). */
export function present(): ValueType<boolean> {
  return { parse: () => true, accepts: "any value", show: (v) => (v ? "set" : "unset") };
}

/**
 * An http(s) URL, returned without trailing slashes; `example` goes into the hint. Whitespace
 * inside is refused (the URL parser would drop it at either end and keep it nowhere useful).
 */
export function httpUrl(example: string): ValueType<string> {
  return {
    parse(raw, name) {
      let ok = !/\s/.test(raw);
      try {
        const u = new URL(raw);
        ok &&= u.protocol === "http:" || u.protocol === "https:";
      } catch {
        ok = false;
      }
      if (!ok) {
        throw configError(
          `${name} ${JSON.stringify(raw)} is not an http(s) URL`,
          `Set ${name} to e.g. ${example}`,
        );
      }
      return raw.replace(/\/+$/, "");
    },
    accepts: "an http(s) URL",
    show: code,
  };
}

/**
 * A region: a host label as the SDK accepts it (letters, digits and hyphens, not at either end,
 * not all digits), e.g. `eu-west-1`, `auto`, `fr-par`.
 */
export function region(): ValueType<string> {
  return {
    parse(raw, name) {
      if (!/^(?![0-9]+$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(raw)) {
        throw configError(
          `${name} ${JSON.stringify(raw)} is not a region`,
          `Set ${name} to the bucket's region, e.g. eu-west-1 (auto for Tigris and R2): ` +
            "letters, digits and hyphens",
        );
      }
      return raw;
    },
    accepts: "a region name: letters, digits, `-`",
    show: code,
  };
}

/** Where a metrics endpoint listens. */
export interface ListenAddress {
  hostname: string;
  port: number;
}

/**
 * Parses a listen address: `:9091` (every interface), `127.0.0.1:9091`, `[::1]:9091` or
 * `host:9091`. Throws a config error (exit 2) naming `name` and the accepted forms.
 */
export function parseListenAddr(raw: string, name = "LIFEBOAT_METRICS_ADDR"): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 1 && port <= 65535)) {
    throw configError(
      `${name} ${JSON.stringify(raw)} is not a listen address`,
      "Use :9091 (every interface), 127.0.0.1:9091 or [::1]:9091",
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

/** A listen address (see `parseListenAddr`). */
export function listenAddress(): ValueType<ListenAddress> {
  return {
    parse: parseListenAddr,
    accepts: "`:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`",
    show: (a) => code(`${a.hostname.includes(":") ? `[${a.hostname}]` : a.hostname}:${a.port}`),
  };
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;

/** An IAM role ARN; a value that does not start with `arn:` is never echoed (a pasted secret). */
export function roleArn(): ValueType<string> {
  return {
    parse(raw, name) {
      if (!ROLE_ARN.test(raw)) {
        throw configError(
          raw.startsWith("arn:")
            ? `${name} ${JSON.stringify(raw)} is not an IAM role ARN`
            : `${name} is not an IAM role ARN (it does not start with arn:)`,
          "Use arn:aws:iam::<12-digit account id>:role/<name>, e.g. " +
            "arn:aws:iam::123456789012:role/lifeboat",
        );
      }
      return raw;
    },
    accepts: "`arn:aws:iam::ACCOUNT:role/NAME`",
    show: code,
  };
}

/** An STS session name: 2–64 letters, digits or `+=,.@_-`. */
export function sessionName(): ValueType<string> {
  return {
    parse(raw, name) {
      if (!/^[\w+=,.@-]{2,64}$/.test(raw)) {
        throw configError(
          `${name} ${JSON.stringify(raw)} is not valid`,
          "Use 2–64 letters, digits or +=,.@_- characters, or unset it",
        );
      }
      return raw;
    },
    accepts: "2–64 letters, digits, `+=,.@_-`",
    show: code,
  };
}

/** A secret (a key, a token): any text, never echoed in a message. */
export function secret(): ValueType<string> {
  return { parse: (raw) => raw, accepts: "", show: () => "(secret)" };
}
