import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import {
  GITHUB_COMMENT_LIMIT,
  MARKER,
  type StackPreview,
  partOf,
  redact,
  renderPreviewComment,
  splitMarkdown,
  summarize,
} from "../scripts/lib/previewComment";

const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures/preview", name), "utf8");
const DIGEST = `sha256:${"4b".repeat(32)}`;

const staging: StackPreview = { stack: "staging", json: fixture("staging-changes.json"), exitCode: 0 };
const prodAllowed: StackPreview = { stack: "prod", json: fixture("prod-allowed.json"), exitCode: 0, promotion: true };
const prodBlocked: StackPreview = {
  stack: "prod",
  json: fixture("prod-blocked.json"),
  exitCode: 255,
  promotion: true,
  log: "error: preview failed",
};

describe("summarize", () => {
  it("counts each operation from the change summary and names replaced and deleted resources first", () => {
    const s = summarize(staging);
    expect(s.succeeded).toBe(true);
    expect(s.counts).toEqual({ create: 1, update: 2, replace: 1, delete: 1, same: 4 });
    expect(s.destructive).toEqual([
      { op: "replace", type: "docker:index/container:Container", name: "backend-staging-container", keys: ["image"] },
      { op: "delete", type: "docker:index/network:Network", name: "backend-staging-legacy-net", keys: [] },
    ]);
    expect(s.others.map((c) => [c.op, c.name, c.keys])).toEqual([
      ["update", "backend-image", ["build"]],
      ["create", "backend-staging-data", []],
      ["update", "backend-staging-readiness", ["imageDigest"]],
    ]);
    expect(s.warnings).toEqual(["Image build uses the local base image local/python-base:3.11-bookworm"]);
    expect(s.errors).toEqual([]);
    expect(s.verdict).toBeUndefined();
  });

  it("reads ALLOWED with digest, check time and source from prod's stack outputs", () => {
    expect(summarize(prodAllowed).verdict).toEqual({
      allowed: true,
      imageDigest: DIGEST,
      checkedAt: "2026-05-04T09:12:33.000Z",
      fromStack: "organization/backend-delivery/staging",
      image: DIGEST,
    });
  });

  it("reads BLOCKED with every reason of the gate's error", () => {
    const s = summarize(prodBlocked);
    expect(s.succeeded).toBe(false);
    expect(s.verdict).toEqual({
      allowed: false,
      reasons: [
        `readiness.ready: staging reports ready=false for ${DIGEST}. — fix: fix staging, then run \`pulumi up --stack staging\` until its readiness check passes`,
        "readiness.checkedAt: staging's readiness check is 31.5 hours old (limit 24). — fix: run `pulumi up --stack staging` to check it again",
      ],
    });
  });

  it("treats empty or foreign output as a failed preview with a clear error", () => {
    const empty = summarize({ stack: "prod", json: "", exitCode: 1, promotion: true });
    expect(empty.succeeded).toBe(false);
    expect(empty.errors).toEqual(["`pulumi preview --json` wrote nothing to stdout"]);
    expect(empty.verdict).toEqual({
      allowed: false,
      reasons: ["the prod preview failed before the gate decided: `pulumi preview --json` wrote nothing to stdout"],
    });
    expect(summarize({ stack: "x", json: "error: no stack named 'x' found" }).errors[0]).toBe(
      "`pulumi preview --json` output is not JSON (was stderr mixed into it?)",
    );
    expect(summarize({ stack: "x", json: '{"steps": [{"op": 3}]}' }).errors[0]).toMatch(
      /^not a `pulumi preview --json` document:\n✖ Invalid input: expected string, received number\n {2}→ at steps\[0\]\.op/,
    );
  });

  it("counts a non-zero exit code as failure even without error diagnostics", () => {
    const s = summarize({ ...staging, exitCode: 2 });
    expect(s.succeeded).toBe(false);
    expect(s.errors).toEqual(["`pulumi preview` exited with code 2"]);
  });
});

describe("renderPreviewComment", () => {
  it("renders one part with the marker, the counts table, destructive changes first and the rest collapsed", () => {
    const parts = renderPreviewComment([staging, prodAllowed], { commit: "9f3c2ab", maxChars: GITHUB_COMMENT_LIMIT });
    expect(parts).toHaveLength(1);
    const body = parts[0]!;
    expect(body.startsWith(`${MARKER}\n<!-- backend-delivery:preview part 1/1 -->\n## Pulumi preview\n\n`)).toBe(true);
    expect(body).toContain("| `staging` | succeeded | 1 | 2 | 1 | 1 | 4 |");
    expect(body).toContain("| `prod` | succeeded | 0 | 1 | 1 | 0 | 6 |");
    const replaced = body.indexOf("**replace** `docker:index/container:Container` `backend-staging-container` (replaced because of: `image`)");
    const deleted = body.indexOf("**delete** `docker:index/network:Network` `backend-staging-legacy-net`");
    const details = body.indexOf("<summary>Other changes (3)</summary>");
    expect(replaced).toBeGreaterThan(0);
    expect(deleted).toBeGreaterThan(replaced);
    expect(details).toBeGreaterThan(deleted);
    expect(body).toContain(
      `**Promotion: ALLOWED** — digest \`${DIGEST}\`, staging checked at \`2026-05-04T09:12:33.000Z\`, from \`organization/backend-delivery/staging\``,
    );
  });

  it("still comments when a preview fails, with its error and the gate's reasons", () => {
    const [body] = renderPreviewComment([{ stack: "staging", json: fixture("staging-failed.json"), exitCode: 255 }, prodBlocked]);
    expect(body).toContain("### `staging`: preview FAILED");
    expect(body).toContain("unable to start container");
    expect(body).toContain("**Promotion: BLOCKED** (2 reasons)");
    expect(body).toContain("- readiness.checkedAt: staging's readiness check is 31.5 hours old (limit 24).");
    expect(body).toContain("<summary>Preview log (stderr)</summary>");
    // The refusal appears once, as the verdict, and the stack reference read is not a change.
    expect(body.match(/readiness check is 31\.5 hours old/g)).toHaveLength(1);
    expect(body).not.toContain("promotion-staging");
  });

  it("redacts stack secrets and credential shapes before anything is posted", () => {
    const canary = "CANARY-db-pass-7731";
    const leaky: StackPreview = {
      stack: "staging",
      json: fixture("staging-failed.json"),
      exitCode: 255,
      log: `GITHUB_TOKEN=ghp_${"a".repeat(36)} used key AKIAABCDEFGHIJKLMNOP; canary ${canary}; "${JSON.stringify(canary + '"q')}"`,
    };
    const parts = renderPreviewComment([leaky], { secrets: [canary, `${canary}"q`] });
    const all = parts.join("\n");
    expect(all).not.toContain(canary);
    expect(all).not.toContain("ghp_aaaa");
    expect(all).not.toContain("AKIAABCDEFGHIJKLMNOP");
    expect(all).toContain("amqp://app:[secret]@mq.internal:5672/app");
  });
});

describe("redact", () => {
  it.each([
    // Assembled at run time so the repository's own secret scan does not flag the test data.
    [`a ${"ghp_"}0123456789abcdefghijABCDEFGHIJ012345 b`, [], "a [secret] b"],
    ["github_pat_11ABCDEFG0123456789_abcdefghijKLMNOPQRSTUVWXYZ", [], "[secret]"],
    ["key AKIAIOSFODNN7EXAMPLE", [], "key [secret]"],
    ["jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlX2hlcmU", [], "jwt [secret]"],
    ["redis://:hunter2@cache:6379/0", [], "redis://:[secret]@cache:6379/0"],
    ["https://user:p%40ss@example.com/x", [], "https://user:[secret]@example.com/x"],
    ["DB_PASSWORD=hunter2 next", [], "DB_PASSWORD=[secret] next"],
    ['"api_key": "abc123def"', [], '"api_key": "[secret]"'],
    ["PULUMI_CONFIG_PASSPHRASE=correct-horse", [], "PULUMI_CONFIG_PASSPHRASE=[secret]"],
    ["Authorization: Bearer abcdef123456789", [], "Authorization: Bearer [secret]"],
    ["value s3cr3t-value and s3cr3t-value-long", ["s3cr3t-value", "s3cr3t-value-long"], "value [secret] and [secret]"],
    ["url a%2Fb%3Dc and a/b=c", ["a/b=c"], "url [secret] and [secret]"],
    ["-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- tail", [], "[secret] tail"],
    ["no secrets here: secretName: PULUMI_BACKEND_URL", [], "no secrets here: secretName: PULUMI_BACKEND_URL"],
  ])("%s", (input, secrets, expected) => {
    expect(redact(input, secrets)).toBe(expected);
  });

  it("leaves Pulumi's own [secret] placeholders as they are", () => {
    expect(redact("envs: [secret], password: [secret]")).toBe("envs: [secret], password: [secret]");
  });
});

describe("splitting into parts", () => {
  const many: StackPreview = {
    stack: "staging",
    json: JSON.stringify({
      steps: Array.from({ length: 1500 }, (_, i) => ({
        op: i % 50 === 0 ? "replace" : "create",
        urn: `urn:pulumi:staging::backend-delivery::docker:index/container:Container::backend-worker-${String(i).padStart(4, "0")}`,
        replaceReasons: ["image"],
      })),
      changeSummary: { create: 1470, replace: 30 },
    }),
    exitCode: 0,
  };

  it("splits at GitHub's limit into numbered parts without dropping a change", () => {
    const parts = renderPreviewComment([many], { maxChars: GITHUB_COMMENT_LIMIT });
    expect(parts.length).toBe(2);
    parts.forEach((p, i) => {
      expect(p.length).toBeLessThanOrEqual(GITHUB_COMMENT_LIMIT);
      expect(p.startsWith(MARKER)).toBe(true);
      expect(p).toContain(`## Pulumi preview (part ${i + 1}/2)`);
      expect(partOf(p)).toBe(i + 1);
    });
    const all = parts.join("\n");
    for (let i = 0; i < 1500; i++) expect(all).toContain(`backend-worker-${String(i).padStart(4, "0")}\``);
  });

  it("closes and reopens <details> and code fences at a cut so each part renders alone", () => {
    const parts = renderPreviewComment([many], { maxChars: 20_000 });
    expect(parts.length).toBeGreaterThan(3);
    for (const p of parts) {
      expect(p.length).toBeLessThanOrEqual(20_000);
      expect((p.match(/^<details>$/gm) ?? []).length).toBe((p.match(/^<\/details>$/gm) ?? []).length);
    }
    const fenced = splitMarkdown(["intro", "```text", ...Array.from({ length: 40 }, (_, i) => `line ${i}`), "```", "end"].join("\n"), 120);
    for (const chunk of fenced) {
      expect(chunk.length).toBeLessThanOrEqual(120);
      expect((chunk.match(/^```/gm) ?? []).length % 2).toBe(0);
    }
    expect(fenced.join("")).toContain("line 39");
  });

  it("cuts a single line longer than a part", () => {
    const chunks = splitMarkdown("x".repeat(2500), 1000);
    expect(chunks.every((c) => c.length <= 1000)).toBe(true);
    expect(chunks.join("").replace(/\n/g, "")).toBe("x".repeat(2500));
  });

  it("finds the part number of a body, and nothing without the marker", () => {
    expect(partOf(`${MARKER}\n<!-- backend-delivery:preview part 3/4 -->\n`)).toBe(3);
    expect(partOf(`${MARKER}\nold format`)).toBe(1);
    expect(partOf(`> ${MARKER} quoted by someone`)).toBeUndefined();
  });
});
