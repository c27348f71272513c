import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { renderPreviewComment } from "../scripts/lib/preview/render";
import { GITHUB_COMMENT_LIMIT, MARKER, partOf, splitMarkdown } from "../scripts/lib/preview/split";
import { type StackPreview, summarize } from "../scripts/lib/preview/stackSummary";
import { formatVerdict, readVerdict } from "../components/promotion/reasons";

// Documents captured from the real CLI by the end-to-end suite (CAPTURE_FIXTURES=1), secrets redacted.
const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures/preview", name), "utf8");
/** The verdict line the gate logged into a captured document. */
const verdictIn = (name: string) => {
  const doc = JSON.parse(fixture(name)) as { diagnostics: { message: string }[] };
  return readVerdict(doc.diagnostics.map((d) => d.message));
};

const staging: StackPreview = { stack: "staging", json: fixture("staging-changes.json"), exitCode: 0 };
const stagingFailed: StackPreview = { stack: "staging", json: fixture("staging-failed.json"), exitCode: 255, log: "error: preview failed" };
const prodAllowed: StackPreview = { stack: "prod", json: fixture("prod-allowed.json"), exitCode: 0, promotion: true };
const prodBlocked: StackPreview = { stack: "prod", json: fixture("prod-blocked.json"), exitCode: 255, promotion: true, log: "error: preview failed" };

describe("summarize (documents from the real CLI)", () => {
  it("reads each stack's TLS from the status line the program logged, and the comment shows it", () => {
    const acme: StackPreview = { stack: "staging", json: fixture("tls-staging-acme.json"), exitCode: 0 };
    const upstream: StackPreview = { stack: "prod", json: fixture("tls-prod-upstream.json"), exitCode: 0, promotion: true };
    const [a, u] = [summarize(acme), summarize(upstream)];
    expect(a.tls).toMatchObject({ mode: "acme", domain: "staging.74b95d.test", served: { issuer: "CN=Pebble Intermediate CA 6f338f", notAfter: "2027-03-02T01:49:37Z" } });
    expect(u.tls).toMatchObject({ mode: "upstream", domain: "api.74b95d.test" });
    expect(u.verdict?.allowed).toBe(true);
    const [body] = renderPreviewComment([acme, upstream]);
    expect(body).toContain("**TLS**: `acme` for `staging.74b95d.test` — serves a certificate from `CN=Pebble Intermediate CA 6f338f`, valid 90.0 more days (until `2027-03-02T01:49:37Z`)");
    expect(body).toContain("**TLS**: `upstream` for `api.74b95d.test` — ended by the load balancer in front; the proxy serves HTTP");
  });

  it("counts each operation from the change summary and names replaced resources first, with why", () => {
    const s = summarize(staging);
    expect(s.succeeded).toBe(true);
    expect(s.counts).toEqual({ create: 0, update: 1, replace: 2, delete: 0, same: 10 });
    // An env change makes a new release (beside the old one), which the check proves and the route switches to.
    expect(s.destructive).toEqual([
      { op: "replace", type: "pulumi-nodejs:dynamic:Resource", name: "backend-delivery-staging-release", keys: ["env"] },
      { op: "replace", type: "pulumi-nodejs:dynamic:Resource", name: "backend-delivery-staging-readiness", keys: ["containerId", "containerName"] },
    ]);
    expect(s.others).toEqual([{ op: "update", type: "pulumi-nodejs:dynamic:Resource", name: "backend-delivery-staging-route", keys: [] }]);
    expect(s.warnings).toEqual([]);
    expect(s.errors).toEqual([]);
    expect(s.verdict).toBeUndefined();
  });

  it("reads ALLOWED, with the digest and staging's check time, from the gate's verdict line", () => {
    const logged = verdictIn("prod-allowed.json");
    expect(logged?.allowed).toBe(true);
    if (logged?.allowed !== true) return;
    expect(logged.imageDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(Number.isNaN(Date.parse(logged.checkedAt))).toBe(false);
    const s = summarize(prodAllowed);
    expect(s.succeeded).toBe(true);
    expect(s.counts).toEqual({ create: 0, update: 0, replace: 0, delete: 0, same: 13 });
    expect(s.verdict).toEqual(logged);
  });

  it.each([
    ["prod-blocked.json", ["stale-readiness"]],
    ["prod-blocked-not-ready.json", ["not-ready"]],
    ["prod-blocked-never-deployed.json", ["missing-output", "missing-output", "missing-output", "missing-output"]],
    ["prod-blocked-unknown.json", ["stack-not-found"]],
  ])("reads BLOCKED with every reason from %s", (name, codes) => {
    const s = summarize({ stack: "prod", json: fixture(name), exitCode: 255, promotion: true });
    expect(s.succeeded).toBe(false);
    expect(s.verdict?.allowed === false && "reasons" in s.verdict && s.verdict.reasons.map((r) => r.code)).toEqual(codes);
    // The gate's error says the same as the verdict: it is shown once, as the verdict.
    expect(s.errors.filter((e) => e.startsWith("prod promotion from"))).toHaveLength(1);
  });

  it("says NOT DECIDED when prod's preview failed before the gate, and why", () => {
    const s = summarize({ stack: "prod", json: fixture("staging-failed.json"), exitCode: 255, promotion: true });
    expect(s.verdict).toEqual({
      allowed: false,
      undecided: expect.stringMatching(/^the prod preview failed before the gate decided: Stack "staging" config is invalid \(1 problem\)/) as unknown,
    });
  });

  it("treats empty or foreign output as a failed preview with a clear error", () => {
    const empty = summarize({ stack: "prod", json: "", exitCode: 1, promotion: true });
    expect(empty.succeeded).toBe(false);
    expect(empty.errors).toEqual(["`pulumi preview --json` wrote nothing to stdout"]);
    expect(empty.verdict).toEqual({
      allowed: false,
      undecided: "the prod preview failed before the gate decided: `pulumi preview --json` wrote nothing to stdout",
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
  it("renders one part with the marker, the counts table, replacements first, and the verdict with digest and check time", () => {
    const parts = renderPreviewComment([staging, prodAllowed], { commit: "9f3c2ab", maxChars: GITHUB_COMMENT_LIMIT });
    expect(parts).toHaveLength(1);
    const body = parts[0]!;
    expect(body.startsWith(`${MARKER}\n<!-- backend-delivery:preview part 1/1 -->\n## Pulumi preview\n\n`)).toBe(true);
    expect(body).toContain("commit `9f3c2ab`");
    expect(body).toContain("| `staging` | succeeded | 0 | 1 | 2 | 0 | 10 |");
    expect(body).toContain("| `prod` | succeeded | 0 | 0 | 0 | 0 | 13 |");
    expect(body).toContain("**Replaced or deleted (2)**");
    expect(body).toContain("**replace** `pulumi-nodejs:dynamic:Resource` `backend-delivery-staging-release` (replaced because of: `env`)");
    const logged = verdictIn("prod-allowed.json");
    if (logged?.allowed !== true) throw new Error("the allowed fixture holds no allowed verdict");
    expect(body).toContain(
      `**Promotion: ALLOWED** — digest \`${logged.imageDigest}\`, staging checked at \`${logged.checkedAt}\`, from \`organization/backend-delivery/staging\``,
    );
    expect(body).toContain("### `prod`: preview succeeded\n\n**Promotion: ALLOWED**");
  });

  it("still comments when a preview fails, with its error and the gate's reasons, each once", () => {
    const [body] = renderPreviewComment([stagingFailed, prodBlocked]);
    expect(body).toContain("### `staging`: preview FAILED");
    expect(body).toContain("✖ Too small: expected number to be >=64");
    expect(body).toContain("fix: pulumi config set --stack staging --path 'service.resources.memoryMb' 512");
    expect(body).toContain("**Promotion: BLOCKED** (1 reason)");
    expect(body).toMatch(/- `readiness\.checkedAt`: staging was last checked at \S+, \d+ (s|min|h) ago, older than promotion\.maxAgeHours = 0\.01\. — fix: run `pulumi up --stack organization\/backend-delivery\/staging` to check staging again/);
    expect(body).toContain("<summary>Preview log (stderr)</summary>");
    expect(body.match(/older than promotion\.maxAgeHours/g)).toHaveLength(1);
  });

  it("shows an override: who approved it and what it lifted", () => {
    const verdict = { allowed: true as const, fromStack: "organization/backend-delivery/staging", imageRef: `sha256:${"a".repeat(64)}`, imageDigest: `sha256:${"a".repeat(64)}`, checkedAt: "2026-11-28T20:00:00.000Z", override: { reason: "INC-7", approvedBy: "alice" }, overridden: [{ code: "stale-readiness" as const, output: "readiness.checkedAt", problem: "staging was last checked long ago", fix: "run pulumi up", overridable: true }] };
    const json = JSON.stringify({ steps: [], diagnostics: [{ severity: "info", message: `${formatVerdict(verdict)}\n` }], changeSummary: { same: 8 } });
    const [body] = renderPreviewComment([{ stack: "prod", json, exitCode: 0, promotion: true }]);
    expect(body).toContain("**Override** approved by `alice`: INC-7. It lifts:");
    expect(body).toContain("- `readiness.checkedAt`: staging was last checked long ago. — fix: run pulumi up");
  });

  it("redacts stack secrets and credential shapes before anything is posted", () => {
    const canary = "CANARY-db-pass-7731";
    const leaky: StackPreview = {
      stack: "staging",
      json: fixture("staging-failed.json"),
      exitCode: 255,
      log: `GITHUB_TOKEN=ghp_${"a".repeat(36)} used key AKIAABCDEFGHIJKLMNOP; canary ${canary}; "${JSON.stringify(canary + '"q')}"; ${["amqp://app", "hunter2@mq.internal:5672/app"].join(":")}`,
    };
    const parts = renderPreviewComment([leaky], { secrets: [canary, `${canary}"q`] });
    const all = parts.join("\n");
    expect(all).not.toContain(canary);
    expect(all).not.toContain("ghp_aaaa");
    expect(all).not.toContain("AKIAABCDEFGHIJKLMNOP");
    expect(all).not.toContain("hunter2");
    expect(all).toContain("amqp://app:[secret]@mq.internal:5672/app");
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
