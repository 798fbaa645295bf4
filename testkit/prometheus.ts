/** Reads Prometheus text exposition (version 0.0.4) in tests: families, their TYPE and HELP, samples. */
import assert from "node:assert/strict";

/** One sample line: name, labels and value. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** A parsed exposition: TYPE and HELP per family, and the samples in order. */
export interface PromText {
  types: Map<string, string>;
  helps: Map<string, string>;
  samples: PromSample[];
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/**
 * Parses `text`, failing the calling test on any line that is not a comment or a well-formed
 * sample, on a sample before its family's TYPE line, and on a TYPE or HELP given twice.
 */
export function parseProm(text: string): PromText {
  const out: PromText = { types: new Map(), helps: new Map(), samples: [] };
  assert.ok(text.endsWith("\n"), "the exposition ends with a newline");
  for (const line of text.slice(0, -1).split("\n")) {
    const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
    if (meta) {
      const map = meta[1] === "HELP" ? out.helps : out.types;
      assert.ok(!map.has(meta[2]), `${meta[1]} ${meta[2]} given twice`);
      map.set(meta[2], meta[3]);
      continue;
    }
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a sample line: ${JSON.stringify(line)}`);
    assert.ok(out.types.has(m[1]), `${m[1]}: sample before its TYPE line`);
    const labels = Object.fromEntries([...(m[2] ?? "").matchAll(LABEL)].map((l) => [l[1], l[2]]));
    const value = Number(m[3]);
    assert.ok(!Number.isNaN(value), `${line}: value is not a number`);
    out.samples.push({ name: m[1], labels, value });
  }
  return out;
}

/** The value of the one sample named `name` whose labels include `labels`; fails if not one. */
export function promValue(p: PromText, name: string, labels: Record<string, string> = {}): number {
  const hits = p.samples.filter((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.equal(hits.length, 1, `one sample ${name}${JSON.stringify(labels)}`);
  return hits[0].value;
}
