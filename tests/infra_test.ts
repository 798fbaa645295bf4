/**
 * Static proof of the OpenTofu configuration in infra/: providers cannot be downloaded here, so every
 * .tf file is parsed (npm hcl2-parser) and each security property of issue 4 is asserted on the
 * parsed structure.
 */
import assert from "node:assert/strict";
import hcl from "hcl2-parser";
import { allSettings } from "../src/settings.ts";
import { SUPERSEDED_TAG } from "../src/store/store.ts";

const INFRA = new URL("../infra/", import.meta.url);

/** A parsed HCL block body: attributes and nested blocks (nested blocks are arrays of bodies). */
type Body = Record<string, unknown>;

/** The merged top level of every .tf file in infra/. */
interface Config {
  resource: Map<string, Body>;
  data: Map<string, Body>;
  variable: Map<string, Body>;
  output: Map<string, Body>;
  locals: Body;
  terraform: Body[];
}

/** One statement of an aws_iam_policy_document, with whether it only exists behind a dynamic block. */
interface Statement {
  body: Body;
  forEach?: string;
}

/** Parses HCL text with hcl2-parser; throws, naming the file, on a syntax error. */
function parseHcl(text: string, file: string): Body {
  const [parsed, error] = hcl.parseToObject(text) as [Body | null, unknown];
  if (error || !parsed) throw new Error(`${file}: HCL parse error ${JSON.stringify(error)}`);
  return parsed;
}

/** Reads every infra/*.tf file, sorted by name. */
function tfFiles(): { name: string; text: string }[] {
  return [...Deno.readDirSync(INFRA)]
    .filter((e) => e.isFile && e.name.endsWith(".tf"))
    .map((e) => e.name)
    .sort()
    .map((name) => ({ name, text: Deno.readTextFileSync(new URL(name, INFRA)) }));
}

/** Adds `labels -> body` entries of a two-label block kind (resource, data) to `into`, rejecting duplicates. */
function addLabelled(into: Map<string, Body>, kinds: unknown, file: string) {
  for (const [type, byName] of Object.entries((kinds ?? {}) as Record<string, Body>)) {
    for (const [name, bodies] of Object.entries(byName)) {
      const key = `${type}.${name}`;
      assert.ok(!into.has(key), `${file}: ${key} is declared twice`);
      into.set(key, only(bodies, key));
    }
  }
}

/** Adds `name -> body` entries of a one-label block kind (variable, output), rejecting duplicates. */
function addNamed(into: Map<string, Body>, named: unknown, file: string) {
  for (const [name, bodies] of Object.entries((named ?? {}) as Record<string, unknown>)) {
    assert.ok(!into.has(name), `${file}: ${name} is declared twice`);
    into.set(name, only(bodies, name));
  }
}

/** Parses and merges the whole configuration. */
function loadConfig(): Config {
  const config: Config = {
    resource: new Map(),
    data: new Map(),
    variable: new Map(),
    output: new Map(),
    locals: {},
    terraform: [],
  };
  for (const { name, text } of tfFiles()) {
    const top = parseHcl(text, name);
    addLabelled(config.resource, top.resource, name);
    addLabelled(config.data, top.data, name);
    addNamed(config.variable, top.variable, name);
    addNamed(config.output, top.output, name);
    for (const locals of (top.locals ?? []) as Body[]) {
      for (const key of Object.keys(locals)) {
        assert.ok(!(key in config.locals), `${name}: local.${key} is declared twice`);
      }
      Object.assign(config.locals, locals);
    }
    config.terraform.push(...((top.terraform ?? []) as Body[]));
  }
  return config;
}

const config = loadConfig();

/** Asserts that `value` is a list of exactly one block body and returns it. */
function only(value: unknown, what: string): Body {
  assert.ok(Array.isArray(value), `${what}: expected a block`);
  assert.equal(value.length, 1, `${what}: expected exactly one block`);
  return value[0] as Body;
}

/** The nested blocks named `key` of a body (an empty list when there are none). */
function blocks(body: Body, key: string): Body[] {
  const value = body[key];
  if (value === undefined) return [];
  assert.ok(Array.isArray(value), `${key} should be a block`);
  return value as Body[];
}

/** The nested labelled blocks `key "label" {}` of a body (dynamic, backend) as [label, body] pairs. */
function labelled(body: Body, key: string): [string, Body][] {
  const byLabel = (body[key] ?? {}) as Record<string, Body[]>;
  assert.ok(!Array.isArray(byLabel), `${key} should be a labelled block`);
  return Object.entries(byLabel).flatMap(([label, bodies]) =>
    bodies.map((b): [string, Body] => [label, b])
  );
}

/** The body of `resource "type" "name"`; fails the test when it is missing. */
function resource(address: string): Body {
  const body = config.resource.get(address);
  assert.ok(body, `resource ${address} is missing`);
  return body;
}

/** The body of `data "type" "name"`; fails the test when it is missing. */
function data(address: string): Body {
  const body = config.data.get(address);
  assert.ok(body, `data ${address} is missing`);
  return body;
}

/** The body of `variable "name"`; fails the test when it is missing. */
function variable(name: string): Body {
  const body = config.variable.get(name);
  assert.ok(body, `variable ${name} is missing`);
  return body;
}

/** A string-or-list policy field as a list. */
function list(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]) as string[];
}

/** The policy document a `${data.aws_iam_policy_document.NAME.json}` reference points at. */
function documentOf(reference: unknown): string {
  const match = /^\$\{data\.aws_iam_policy_document\.(\w+)\.json\}$/.exec(String(reference));
  assert.ok(match, `${reference} should be an aws_iam_policy_document's json`);
  return match[1];
}

/** Every statement of an aws_iam_policy_document, including those generated by `dynamic "statement"`. */
function statements(document: string): Statement[] {
  const body = data(`aws_iam_policy_document.${document}`);
  const dynamic = labelled(body, "dynamic").filter(([label]) => label === "statement").map((
    [, d],
  ) => d);
  return [
    ...blocks(body, "statement").map((s) => ({ body: s })),
    ...dynamic.map((d) => ({
      body: only(d.content, "dynamic statement content"),
      forEach: String(d.for_each),
    })),
  ];
}

/** The effect of a statement (IAM's default is Allow). */
function effect(statement: Body): string {
  return String(statement.effect ?? "Allow");
}

/** The conditions of a statement as "test variable" -> values. */
function conditions(statement: Body): Map<string, string[]> {
  return new Map(
    blocks(statement, "condition").map((c) => [`${c.test} ${c.variable}`, list(c.values)]),
  );
}

/** The statements of the role's permissions policy (aws_iam_role_policy.lifeboat). */
function rolePolicy(): Statement[] {
  const attachment = resource("aws_iam_role_policy.lifeboat");
  assert.equal(attachment.role, "${aws_iam_role.lifeboat.id}");
  return statements(documentOf(attachment.policy));
}

/** The statements of the role's trust policy. */
function trustPolicy(): Statement[] {
  return statements(documentOf(resource("aws_iam_role.lifeboat").assume_role_policy));
}

/** The RE2 pattern inside `can(regex("..."))` of a variable's validation, as a JS RegExp. */
function validationPattern(name: string): RegExp {
  const condition = String(only(variable(name).validation, `${name} validation`).condition);
  const match = /regex\("((?:[^"\\]|\\.)*)"/.exec(condition);
  assert.ok(match, `variable ${name}: validation should use regex(...)`);
  return new RegExp(JSON.parse(`"${match[1]}"`));
}

/** Asserts a variable's validation accepts every `good` value and rejects every `bad` one. */
function assertValidation(name: string, good: string[], bad: string[]) {
  const pattern = validationPattern(name);
  for (const value of good) assert.ok(pattern.test(value), `${name} should accept ${value}`);
  for (const value of bad) assert.ok(!pattern.test(value), `${name} should reject ${value}`);
}

/**
 * The lines output `fly_toml_env` prints, as name -> value (interpolations left as `${…}`), with
 * its one template directive evaluated as OpenTofu does (checked with tofu console).
 */
function flyTomlEnv(useKms: boolean): Map<string, string> {
  const template = String(config.output.get("fly_toml_env")?.value);
  const branch = /%\{if local\.use_kms\}([\s\S]*?)%\{endif~?\}\n?/; // the parser drops ~
  assert.match(template, branch, "the SSE lines depend on local.use_kms");
  const text = template.replace(branch, (_, lines: string) => (useKms ? lines : ""));
  const [header, ...lines] = text.trimEnd().split("\n");
  assert.equal(header, "[env]");
  return new Map(lines.map((line) => {
    const match = /^ {2}([A-Z0-9_]+) = "([^"]*)"$/.exec(line);
    assert.ok(match, `not a TOML key = "string" line: ${line}`);
    return [match[1], match[2]];
  }));
}

const BUCKET_SETTINGS = [
  "aws_s3_bucket_ownership_controls",
  "aws_s3_bucket_public_access_block",
  "aws_s3_bucket_server_side_encryption_configuration",
  "aws_s3_bucket_lifecycle_configuration",
  "aws_s3_bucket_policy",
];
const BACKUP_OBJECTS = "${aws_s3_bucket.backups.arn}/${local.prefix}/*";
const BUCKET_ARN = "${aws_s3_bucket.backups.arn}";

Deno.test("infra: the bucket is named by var.bucket_name and a plan can never destroy it", () => {
  const bucket = resource("aws_s3_bucket.backups");
  assert.equal(bucket.bucket, "${var.bucket_name}");
  assert.equal(bucket.force_destroy, false);
  assert.equal(only(bucket.lifecycle, "lifecycle").prevent_destroy, true);
  assertValidation("bucket_name", ["my-backups", "a.b-c"], ["My_Bucket", "ab", "-x-"]);
});

Deno.test("infra: every bucket setting applies to the backup bucket", () => {
  for (const type of BUCKET_SETTINGS) {
    assert.equal(resource(`${type}.backups`).bucket, "${aws_s3_bucket.backups.id}", type);
  }
});

Deno.test("infra: server-side encryption is SSE-S3 by default, SSE-KMS with kms_key_id, bucket key on", () => {
  const rule = only(
    resource("aws_s3_bucket_server_side_encryption_configuration.backups").rule,
    "rule",
  );
  assert.equal(rule.bucket_key_enabled, true);
  const byDefault = only(rule.apply_server_side_encryption_by_default, "apply_by_default");
  assert.equal(byDefault.sse_algorithm, '${local.use_kms ? "aws:kms" : "AES256"}');
  assert.equal(
    byDefault.kms_master_key_id,
    "${local.use_kms ? data.aws_kms_key.backups[0].arn : null}",
  );
  assert.equal(config.locals.use_kms, "${var.kms_key_id != null}");
  assert.equal(variable("kms_key_id").default, null, "SSE-S3 unless a key is given");
  assert.equal(data("aws_kms_key.backups").count, "${local.use_kms ? 1 : 0}");
});

Deno.test("infra: all four public-access-block settings are on", () => {
  const block = resource("aws_s3_bucket_public_access_block.backups");
  for (
    const setting of [
      "block_public_acls",
      "block_public_policy",
      "ignore_public_acls",
      "restrict_public_buckets",
    ]
  ) {
    assert.equal(block[setting], true, setting);
  }
});

Deno.test("infra: object ownership is BucketOwnerEnforced (ACLs disabled)", () => {
  const rule = only(resource("aws_s3_bucket_ownership_controls.backups").rule, "rule");
  assert.equal(rule.object_ownership, "BucketOwnerEnforced");
});

Deno.test("infra: the bucket policy denies every request made without TLS", () => {
  const policy = resource("aws_s3_bucket_policy.backups");
  const [deny] = statements(documentOf(policy.policy));
  assert.equal(effect(deny.body), "Deny");
  assert.deepEqual(list(deny.body.actions), ["s3:*"]);
  assert.deepEqual(list(deny.body.resources).sort(), [BUCKET_ARN, `${BUCKET_ARN}/*`].sort());
  const principal = only(deny.body.principals, "principals");
  assert.deepEqual([principal.type, list(principal.identifiers)], ["*", ["*"]]);
  assert.deepEqual(conditions(deny.body), new Map([["Bool aws:SecureTransport", ["false"]]]));
  assert.deepEqual(list(policy.depends_on), ["${aws_s3_bucket_public_access_block.backups}"]);
});

Deno.test("infra: write-once (#21): no backup written without If-None-Match, the manifest never unconditionally; multipart parts exempt", () => {
  const policy = resource("aws_s3_bucket_policy.backups");
  const [, backups, manifest, ...others] = statements(documentOf(policy.policy));
  assert.equal(others.length, 0, "TLS, backups and the manifest: nothing else");
  for (const s of [backups, manifest]) {
    assert.equal(effect(s.body), "Deny");
    assert.deepEqual(list(s.body.actions), ["s3:PutObject"]);
    const principal = only(s.body.principals, "principals");
    assert.deepEqual([principal.type, list(principal.identifiers)], ["*", ["*"]]);
  }
  assert.deepEqual(list(backups.body.resources), [`${BUCKET_ARN}/\${local.prefix}/backups/*`]);
  assert.deepEqual(
    conditions(backups.body),
    new Map([
      ["Null s3:if-none-match", ["true"]],
      // CreateMultipartUpload and UploadPart take no conditional header: they must stay allowed.
      ["Bool s3:ObjectCreationOperation", ["true"]],
    ]),
  );
  assert.deepEqual(list(manifest.body.resources), [`${BUCKET_ARN}/\${local.prefix}/lifeboat.json`]);
  assert.deepEqual(
    conditions(manifest.body),
    new Map([["Null s3:if-none-match", ["true"]], ["Null s3:if-match", ["true"]]]),
  );
});

Deno.test("infra: lifecycle expires only superseded backups, per tier (recent 2, hourly 14, daily 30 days by default), never the newest or the manifest; aborts incomplete multipart uploads after 1 day", () => {
  const rules = blocks(resource("aws_s3_bucket_lifecycle_configuration.backups"), "rule");
  const byId = new Map(rules.map((r) => [r.id, r]));
  assert.equal(byId.get("expire-backups"), undefined, "no rule expires every backup by age");
  const tiers: [string, string, string, number][] = [
    ["expire-recent-backups", "${local.prefix}/backups/recent/", "recent_days", 2],
    ["expire-hourly-backups", "${local.prefix}/backups/hourly/", "hourly_days", 14],
    // The daily tier, and superseded backups of the layouts before lifeboat 0.3.
    ["expire-superseded-backups", "${local.prefix}/", "retention_days", 30],
  ];
  for (const [id, prefix, days, fallback] of tiers) {
    const expire = byId.get(id);
    assert.ok(expire, `an ${id} rule`);
    assert.equal(expire.status, "Enabled");
    const and = only(only(expire.filter, "filter").and, "filter.and");
    assert.equal(and.prefix, prefix, id);
    assert.deepEqual(and.tags, { [SUPERSEDED_TAG.key]: SUPERSEDED_TAG.value });
    assert.equal(only(expire.expiration, "expiration").days, `\${var.${days}}`);
    assert.equal(variable(days).type, "${number}");
    assert.equal(variable(days).default, fallback);
  }
  // Every rule that expires objects is filtered on the tag lifeboat sets: nothing else expires.
  for (const rule of rules.filter((r) => r.expiration || r.noncurrent_version_expiration)) {
    const filter = only(rule.filter, "filter");
    const tags = (filter.and ? only(filter.and, "filter.and").tags : undefined) as
      | Record<string, string>
      | undefined;
    assert.equal(tags?.[SUPERSEDED_TAG.key], SUPERSEDED_TAG.value, `rule ${rule.id} is untagged`);
  }
  const abort = byId.get("abort-incomplete-multipart-uploads");
  assert.ok(abort, "an abort-incomplete-multipart-uploads rule");
  assert.equal(abort.status, "Enabled");
  assert.deepEqual(only(abort.filter, "filter"), {}, "applies to the whole bucket");
  assert.equal(only(abort.abort_incomplete_multipart_upload, "abort").days_after_initiation, 1);
  const pre = only(
    only(resource("aws_s3_bucket_lifecycle_configuration.backups").lifecycle, "lifecycle")
      .precondition,
    "precondition",
  );
  assert.equal(
    pre.condition,
    "${var.recent_days <= var.hourly_days && var.hourly_days <= var.retention_days}",
  );
});

Deno.test("infra: lifecycle configurations for stores that filter by prefix only (Tigris, R2) expire the three tiers and nothing else", async () => {
  const DAY = 86_400;
  const want = [["recent", 2], ["hourly", 14], ["daily", 30]] as const;
  const s3 = JSON.parse(await Deno.readTextFile(new URL("lifecycle/s3-prefix.json", INFRA)));
  const r2 = JSON.parse(await Deno.readTextFile(new URL("lifecycle/r2.json", INFRA)));
  const s3Expire = s3.Rules.filter((r: { Expiration?: unknown }) => r.Expiration);
  const r2Expire = r2.rules.filter((r: { deleteObjectsTransition?: unknown }) =>
    r.deleteObjectsTransition
  );
  assert.deepEqual(
    s3Expire.map((r: { Filter: { Prefix: string }; Expiration: { Days: number } }) => [
      r.Filter.Prefix,
      r.Expiration.Days,
    ]),
    want.map(([tier, days]) => [`APP_PREFIX/backups/${tier}/`, days]),
  );
  assert.deepEqual(
    r2Expire.map((
      r: { conditions: { prefix: string }; deleteObjectsTransition: { condition: unknown } },
    ) => [r.conditions.prefix, r.deleteObjectsTransition.condition]),
    want.map((
      [tier, days],
    ) => [`APP_PREFIX/backups/${tier}/`, { type: "Age", maxAge: days * DAY }]),
  );
  for (const rules of [s3.Rules, r2.rules]) {
    assert.ok(
      rules.every((r: { Status?: string; enabled?: boolean }) =>
        r.Status === "Enabled" || r.enabled === true
      ),
    );
    // No rule may reach the kept copies or the manifest: those are what keep the newest.
    const text = JSON.stringify(rules);
    assert.doesNotMatch(text, /kept|lifeboat\.json/);
  }
  // The defaults agree with infra's AWS rules.
  for (const [tier, days] of want) {
    const name = tier === "daily" ? "retention_days" : `${tier}_days`;
    assert.equal(variable(name).default, days);
  }
});

Deno.test("infra: the OIDC provider is https://oidc.fly.io/<fly_org> for sts.amazonaws.com, without thumbprint", () => {
  assert.equal(config.locals.oidc_host, "oidc.fly.io/${var.fly_org}");
  assert.equal(config.locals.oidc_audience, "sts.amazonaws.com");
  const provider = resource("aws_iam_openid_connect_provider.fly");
  assert.equal(provider.url, "https://${local.oidc_host}");
  assert.deepEqual(provider.client_id_list, ["${local.oidc_audience}"]);
  assert.ok(!("thumbprint_list" in provider), "no thumbprint_list");
});

Deno.test("infra: create_oidc_provider = false reuses the existing provider through a data source", () => {
  assert.equal(variable("create_oidc_provider").default, true);
  assert.equal(
    resource("aws_iam_openid_connect_provider.fly").count,
    "${var.create_oidc_provider ? 1 : 0}",
  );
  const existing = data("aws_iam_openid_connect_provider.fly");
  assert.equal(existing.count, "${var.create_oidc_provider ? 0 : 1}");
  assert.equal(existing.url, "https://${local.oidc_host}");
  assert.equal(
    config.locals.oidc_provider_arn,
    "${var.create_oidc_provider ? aws_iam_openid_connect_provider.fly[0].arn : data.aws_iam_openid_connect_provider.fly[0].arn}",
  );
});

Deno.test("infra: the trust policy allows only AssumeRoleWithWebIdentity from the fly provider, aud sts.amazonaws.com", () => {
  const [trust, ...others] = trustPolicy();
  assert.equal(others.length, 0, "one trust statement");
  assert.equal(trust.forEach, undefined);
  assert.equal(effect(trust.body), "Allow");
  assert.deepEqual(list(trust.body.actions), ["sts:AssumeRoleWithWebIdentity"]);
  const principal = only(trust.body.principals, "principals");
  assert.deepEqual([principal.type, list(principal.identifiers)], ["Federated", [
    "${local.oidc_provider_arn}",
  ]]);
  assert.deepEqual(conditions(trust.body).get("StringEquals ${local.oidc_host}:aud"), [
    "${local.oidc_audience}",
  ]);
});

Deno.test("infra: the trust policy's sub is scoped to one app (<fly_org>:<fly_app>:*), never a bare *", () => {
  const [trust] = trustPolicy();
  const subs = [...conditions(trust.body)].filter(([key]) => key.endsWith(":sub"));
  assert.deepEqual(subs, [["StringLike ${local.oidc_host}:sub", [
    "${var.fly_org}:${var.fly_app}:*",
  ]]]);
  // The only wildcard is the machine part: org and app names cannot smuggle one in.
  assertValidation("fly_org", ["my-org", "personal"], ["*", "my-org*", "a:b", "", "Org"]);
  assertValidation("fly_app", ["my-app", "app2"], ["*", "app?", "my-app:*", "", "-app"]);
});

Deno.test("infra: the role may put, get, tag and abort uploads under <bucket>/<prefix>/* and list that prefix only", () => {
  const byId = new Map(rolePolicy().map((s) => [s.body.sid, s]));
  const objects = byId.get("ReadWriteBackups");
  assert.ok(objects);
  assert.deepEqual(
    list(objects.body.actions).sort(),
    ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"],
  );
  assert.deepEqual(list(objects.body.resources), [BACKUP_OBJECTS]);
  const listing = byId.get("ListBackups");
  assert.ok(listing);
  assert.deepEqual(list(listing.body.actions), ["s3:ListBucket"]);
  assert.deepEqual(list(listing.body.resources), [BUCKET_ARN]);
  assert.deepEqual(
    conditions(listing.body),
    new Map([["StringLike s3:prefix", ["${local.prefix}/*"]]]),
  );
  assert.equal(config.locals.prefix, "${coalesce(var.prefix, var.fly_app)}");
  assertValidation("prefix", ["app", "backups/app", "a.b_c-d"], [
    "/app",
    "app/",
    "a//b",
    "*",
    "app/*",
    "",
  ]);
});

Deno.test("infra: KMS permissions exist only when KMS is on, only on that key, only through S3", () => {
  const kms = rolePolicy().filter((s) => list(s.body.actions).some((a) => a.startsWith("kms:")));
  assert.equal(kms.length, 1);
  const [statement] = kms;
  assert.equal(statement.forEach, "${local.use_kms ? [1] : []}");
  assert.deepEqual(list(statement.body.actions).sort(), [
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey",
  ]);
  assert.deepEqual(list(statement.body.resources), ["${data.aws_kms_key.backups[0].arn}"]);
  assert.deepEqual(
    conditions(statement.body).get("StringEquals kms:ViaService"),
    ["s3.${var.region}.amazonaws.com"],
  );
});

Deno.test("infra: no Allow grants a Delete action, a * action or a * resource", () => {
  const documents = [...config.data.keys()]
    .filter((k) => k.startsWith("aws_iam_policy_document."))
    .map((k) => k.split(".")[1]);
  assert.ok(documents.length >= 3);
  for (const document of documents) {
    for (const { body } of statements(document).filter((s) => effect(s.body) === "Allow")) {
      for (const action of list(body.actions)) {
        assert.ok(!/delete/i.test(action), `${document}: ${action} deletes`);
        assert.ok(!action.includes("*"), `${document}: ${action} is a wildcard action`);
      }
      assert.equal(body.not_actions, undefined, `${document}: NotAction grants everything else`);
      assert.equal(
        body.not_resources,
        undefined,
        `${document}: NotResource grants everything else`,
      );
      for (const arn of list(body.resources)) {
        assert.ok(
          !arn.includes("*") || arn === BACKUP_OBJECTS,
          `${document}: ${arn} is a wildcard resource`,
        );
      }
    }
  }
});

Deno.test("infra: state lives in an S3 backend with use_lockfile, configured at init (no names in the repo)", () => {
  const backends = config.terraform.flatMap((t) => labelled(t, "backend"));
  assert.deepEqual(backends.map(([type]) => type), ["s3"], "one backend, of type s3");
  const [[, s3]] = backends;
  assert.equal(s3.use_lockfile, true);
  for (const setting of ["bucket", "key", "region", "dynamodb_table", "role_arn", "profile"]) {
    assert.ok(!(setting in s3), `${setting} belongs in -backend-config, not in the repo`);
  }
});

Deno.test("infra: no configuration or doc under infra/ holds an AWS account id", () => {
  const names = [...Deno.readDirSync(INFRA)]
    .filter((e) => e.isFile && /\.(tf|tfvars|md)$/.test(e.name))
    .map((e) => e.name);
  assert.ok(names.includes("README.md") && names.includes("example.tfvars"));
  for (const name of names) {
    const text = Deno.readTextFileSync(new URL(name, INFRA));
    assert.doesNotMatch(text, /\b\d{12}\b/, `${name} holds a 12-digit number`);
  }
});

Deno.test("infra: OpenTofu/Terraform >= 1.10 (for use_lockfile) and hashicorp/aws >= 5.81 (optional thumbprint)", () => {
  const [settings] = config.terraform.filter((t) => "required_version" in t);
  assert.equal(settings.required_version, ">= 1.10.0");
  const aws = only(settings.required_providers, "required_providers").aws as Body;
  assert.equal(aws.source, "hashicorp/aws");
  assert.match(String(aws.version), /^>= 5\.81\.0, < 6\.0\.0$/, "one major version");
});

Deno.test("infra: outputs role_arn, bucket_name, region and the exact fly.toml [env] lines, KMS ones with a key", () => {
  const value = (name: string) => {
    const output = config.output.get(name);
    assert.ok(output, `output ${name} is missing`);
    assert.ok(output.description, `output ${name} needs a description`);
    return output.value;
  };
  assert.equal(value("role_arn"), "${aws_iam_role.lifeboat.arn}");
  assert.equal(value("bucket_name"), "${aws_s3_bucket.backups.bucket}");
  assert.equal(value("region"), "${var.region}");
  const url = "s3://${aws_s3_bucket.backups.bucket}/${local.prefix}";
  assert.equal(value("lifeboat_url"), url);
  value("fly_toml_env");
  const envOf = flyTomlEnv;
  const common: [string, string][] = [
    ["AWS_ROLE_ARN", "${aws_iam_role.lifeboat.arn}"],
    ["LIFEBOAT_S3_ENDPOINT", "aws"],
    ["LIFEBOAT_S3_REGION", "${var.region}"],
    ["LIFEBOAT_URL", url],
    ["LIFEBOAT_DB", "${var.db_path}"],
  ];
  assert.deepEqual(envOf(false), new Map(common), "SSE-S3: the bucket's default encryption");
  assert.deepEqual(
    envOf(true),
    new Map([
      ...common,
      ["LIFEBOAT_S3_SSE", "aws:kms"],
      ["LIFEBOAT_S3_KMS_KEY_ID", "${data.aws_kms_key.backups[0].arn}"],
    ]),
  );
  // Every name it prints is one lifeboat reads (a row of src/settings.ts).
  const read = new Set(allSettings().flatMap((s) => s.env));
  for (const [name] of envOf(true)) assert.ok(read.has(name), `lifeboat reads ${name}`);
});

Deno.test("infra: every variable is typed, described, in README.md and example.tfvars sets only real ones", () => {
  const readme = Deno.readTextFileSync(new URL("README.md", INFRA));
  for (const [name, body] of config.variable) {
    assert.ok(body.type, `variable ${name} needs a type`);
    assert.ok(body.description, `variable ${name} needs a description`);
    assert.ok(readme.includes(`\`${name}\``), `infra/README.md should explain \`${name}\``);
  }
  const example = parseHcl(
    Deno.readTextFileSync(new URL("example.tfvars", INFRA)),
    "example.tfvars",
  );
  for (const name of Object.keys(example)) {
    assert.ok(config.variable.has(name), `example.tfvars: ${name} is not a variable`);
  }
  const required = [...config.variable].filter(([, body]) => !("default" in body)).map(([name]) =>
    name
  );
  assert.deepEqual(required.sort(), ["bucket_name", "fly_app", "fly_org", "region"]);
  for (const name of required) assert.ok(name in example, `example.tfvars should set ${name}`);
});

/** The `[env]` lines of the first ```toml block after `heading` in `markdown`, as name -> value. */
function tomlEnvAfter(markdown: string, heading: string): Map<string, string> {
  const from = markdown.indexOf(heading);
  assert.ok(from >= 0, `no ${heading}`);
  const block = /```toml\n([\s\S]*?)```/.exec(markdown.slice(from));
  assert.ok(block, `no toml block after ${heading}`);
  const env = /\[env\]\n((?: {2}[A-Z0-9_]+ = "[^"]*"\n)+)/.exec(block[1]);
  assert.ok(env, `no [env] section in the toml block after ${heading}`);
  return new Map(
    env[1].trimEnd().split("\n").map((l) => {
      const [, name, value] = /^ {2}([A-Z0-9_]+) = "([^"]*)"$/.exec(l)!;
      return [name, value];
    }),
  );
}

/** Asserts that `shown` has exactly the template's lines, in order, literal values equal. */
function assertShowsTemplate(shown: Map<string, string>, where: string): void {
  const template = flyTomlEnv(false);
  assert.deepEqual([...shown.keys()], [...template.keys()], `${where}: the lines of fly_toml_env`);
  for (const [name, value] of template) {
    if (!value.includes("${")) assert.equal(shown.get(name), value, `${where}: ${name}`);
  }
}

Deno.test("infra docs: infra/README.md's outputs table is outputs.tf (names and descriptions)", () => {
  const readme = Deno.readTextFileSync(new URL("README.md", INFRA));
  const section = readme.slice(readme.indexOf("## Outputs"));
  const rows = section.split("\n").filter((l) => /^\| `[a-z_]+` /.test(l)).map((l) =>
    l.split("|").slice(1, -1).map((c) => c.trim())
  );
  assert.deepEqual(
    new Map(rows.map(([name, meaning]) => [name.replace(/`/g, ""), meaning])),
    new Map([...config.output].map(([name, body]) => [name, String(body.description)])),
    "infra/README.md ## Outputs: one row per output of outputs.tf, its description as meaning",
  );
});

Deno.test("infra docs: every fly_toml_env example (infra/README.md, README.md) prints what the template prints; fly.toml has its lines", () => {
  const infraReadme = Deno.readTextFileSync(new URL("README.md", INFRA));
  assertShowsTemplate(tomlEnvAfter(infraReadme, "## By hand"), "infra/README.md, By hand");
  const readme = Deno.readTextFileSync(new URL("../README.md", INFRA));
  assertShowsTemplate(tomlEnvAfter(readme, "## Running on fly.io"), "README.md, Running on fly.io");
  const fly = Deno.readTextFileSync(new URL("../fly.toml", INFRA));
  for (const [name, value] of flyTomlEnv(false)) {
    assert.match(fly, new RegExp(`^ {2}${name} = "`, "m"), `fly.toml [env] ${name}`);
    if (!value.includes("${")) assert.match(fly, new RegExp(`^ {2}${name} = "${value}"`, "m"));
  }
});

Deno.test("infra docs: README's hand-made role grants exactly the role's actions", () => {
  const readme = Deno.readTextFileSync(new URL("../README.md", INFRA));
  const from = readme.indexOf("The role needs ");
  assert.ok(from >= 0, "README.md describes the role");
  // The paragraph is rewrapped by deno fmt: find its end whatever the line breaks.
  const end = from + readme.slice(from).search(/No\s+delete\s+permission/);
  assert.ok(end > from, "README.md says the role has no delete permission");
  const sentence = readme.slice(from, end);
  const documented = [...sentence.matchAll(/`((?:s3|kms):[A-Z][A-Za-z]+)`/g)].map((m) => m[1])
    .sort();
  const granted = rolePolicy().flatMap((s) => list(s.body.actions)).sort();
  assert.deepEqual(documented, granted, "README.md, Running on fly.io: The role needs …");
});
