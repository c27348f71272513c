/**
 * The pull-request comment's dependency changes: the SBOM diff (added, removed, changed, with
 * versions), how the comment shows it (counts first, long lists folded, split into parts and never
 * cut), which images it compares (the verdict's candidate and prod's current one) and what it says
 * when an SBOM is missing; and the signature line of the verdict. The SBOMs are read from a real
 * registry in test/supplyChain.docker.test.ts and the end-to-end suite; here the reader is a stand-in.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { formatVerdict, type PromotionVerdict } from "../components/promotion/reasons";
import type { SbomPackage } from "../components/supplyChain/sbom";
import { sbomPackages } from "../components/supplyChain/sbom";
import type { SbomRead } from "../components/supplyChain/verify";
import { dependencyChanges, sbomSourceFromConfigJson, type SbomSource } from "../scripts/lib/preview/dependencies";
import { renderPreviewComment } from "../scripts/lib/preview/render";
import { FOLD_AFTER, diffSboms, renderDependencyChanges } from "../scripts/lib/preview/sbomDiff";
import type { StackPreview } from "../scripts/lib/preview/stackSummary";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const CANDIDATE = `ghcr.io/acme/backend@${D("c")}`;
const CURRENT = `ghcr.io/acme/backend@${D("0")}`;
const pkg = (ecosystem: string, name: string, version: string): SbomPackage => ({ ecosystem, name, version });
const code = (t: string) => `\`${t}\``;

describe("diffSboms", () => {
  it("lists added, removed and changed packages by type and name, sorted", () => {
    const before = [pkg("pypi", "fastapi", "0.115.0"), pkg("pypi", "idna", "3.10"), pkg("deb", "libc6", "2.36-9"), pkg("deb", "openssl", "3.0.15")];
    const after = [pkg("pypi", "fastapi", "0.115.0"), pkg("pypi", "idna", "3.9"), pkg("deb", "libc6", "2.36-9+deb12u1"), pkg("pypi", "anyio", "4.6.0")];
    expect(diffSboms(before, after)).toEqual({
      added: [pkg("pypi", "anyio", "4.6.0")],
      removed: [pkg("deb", "openssl", "3.0.15")],
      changed: [
        { ecosystem: "deb", name: "libc6", from: "2.36-9", to: "2.36-9+deb12u1" },
        { ecosystem: "pypi", name: "idna", from: "3.10", to: "3.9" },
      ],
    });
  });

  it("a package of the same name in another ecosystem is another package; several versions of one name count once", () => {
    expect(diffSboms([pkg("pypi", "six", "1.16"), pkg("deb", "six", "1.16")], [pkg("pypi", "six", "1.17"), pkg("deb", "six", "1.16"), pkg("deb", "six", "1.17")])).toEqual({
      added: [],
      removed: [],
      changed: [
        { ecosystem: "deb", name: "six", from: "1.16", to: "1.16, 1.17" },
        { ecosystem: "pypi", name: "six", from: "1.16", to: "1.17" },
      ],
    });
    expect(diffSboms([pkg("pypi", "a", "1")], [pkg("pypi", "a", "1")])).toEqual({ added: [], removed: [], changed: [] });
  });

  it("reads packages from an SPDX document as syft writes it, leaving the image itself out", () => {
    const doc = {
      spdxVersion: "SPDX-2.3",
      packages: [
        { name: "ghcr.io/acme/backend", versionInfo: D("c"), primaryPackagePurpose: "CONTAINER", externalRefs: [{ referenceType: "purl", referenceLocator: "pkg:oci/backend@sha256%3Acc" }] },
        { name: "fastapi", versionInfo: "0.115.0", externalRefs: [{ referenceType: "purl", referenceLocator: "pkg:pypi/fastapi@0.115.0" }] },
        { name: "libc6", versionInfo: "2.36-9", externalRefs: [{ referenceType: "cpe23Type", referenceLocator: "cpe:2.3:a" }, { referenceType: "purl", referenceLocator: "pkg:deb/debian/libc6@2.36-9?arch=amd64" }] },
        { name: "orphan", versionInfo: "1" },
      ],
    };
    expect(sbomPackages(doc)).toEqual([pkg("deb", "libc6", "2.36-9"), pkg("other", "orphan", "1"), pkg("pypi", "fastapi", "0.115.0")]);
    expect(() => sbomPackages({ bomFormat: "CycloneDX" })).toThrow("not an SPDX JSON document");
  });
});

describe("renderDependencyChanges", () => {
  it("gives the counts first, then short lists in full", () => {
    const lines = renderDependencyChanges({ candidate: D("c"), current: D("0"), diff: diffSboms([pkg("pypi", "idna", "3.10")], [pkg("pypi", "idna", "3.9"), pkg("deb", "curl", "7.88")]) }, code);
    expect(lines[0]).toBe(`**Dependency changes** of \`${D("c")}\` (from the SBOMs, against prod's \`${D("0")}\`): 1 added, 0 removed, 1 changed`);
    expect(lines).toContain("| `idna` | Python | 3.10 | 3.9 |");
    expect(lines).toContain("| `curl` | Debian | 7.88 |");
    expect(lines).not.toContain("<details>");
  });

  it("folds a long list, and says when nothing changed", () => {
    const many = Array.from({ length: FOLD_AFTER + 1 }, (_, i) => pkg("deb", `lib${i}`, "1"));
    const folded = renderDependencyChanges({ candidate: D("c"), diff: diffSboms([], many) }, code);
    expect(folded[0]).toContain("prod runs no image yet): 11 added, 0 removed, 0 changed");
    expect(folded).toContain("<summary>Added (11)</summary>");
    expect(renderDependencyChanges({ candidate: D("c"), current: D("0"), diff: diffSboms(many, many) }, code)[0]).toMatch(/: no change\.$/);
    expect(renderDependencyChanges({ candidate: D("c"), problem: "prod's current image has no verified SBOM" }, code)[0]).toMatch(/: not shown — prod's current image has no verified SBOM\.$/);
  });
});

describe("dependencyChanges: which images, and what is missing", () => {
  const source: SbomSource = { login: { server: "ghcr.io", username: "acme", password: "canary-registry-pw" }, publicKey: "PEM" };
  const sboms: Record<string, SbomRead> = {
    [CANDIDATE]: { ok: true, packages: [pkg("pypi", "idna", "3.9")] },
    [CURRENT]: { ok: true, packages: [pkg("pypi", "idna", "3.10")] },
  };
  const reads: string[] = [];
  const read = async (ref: string): Promise<SbomRead> => {
    reads.push(ref);
    return sboms[ref] ?? { ok: false, problem: { code: "sbom-missing", problem: `the registry holds no SPDX SBOM attestation for ${ref.slice(ref.indexOf("@") + 1)}` } };
  };
  const allowed = (extra: Partial<Extract<PromotionVerdict, { allowed: true }>> = {}): PromotionVerdict => ({
    allowed: true,
    fromStack: "organization/backend-delivery/staging",
    imageRef: CANDIDATE,
    imageDigest: D("c"),
    checkedAt: "2030-01-01T00:00:00.000Z",
    currentImageRef: CURRENT,
    ...extra,
  });

  it("compares the candidate with what prod runs now, both read with prod's credentials and key", async () => {
    reads.length = 0;
    expect(await dependencyChanges(allowed(), source, read)).toEqual({
      candidate: CANDIDATE,
      current: CURRENT,
      diff: { added: [], removed: [], changed: [{ ecosystem: "pypi", name: "idna", from: "3.10", to: "3.9" }] },
    });
    expect(reads.sort()).toEqual([CANDIDATE, CURRENT].sort());
  });

  it("on prod's first deploy every package is new", async () => {
    const first = allowed() as Extract<PromotionVerdict, { allowed: true }>;
    delete first.currentImageRef;
    expect((await dependencyChanges(first, source, read))?.diff?.added).toEqual([pkg("pypi", "idna", "3.9")]);
  });

  it("says so when prod's current image, or the candidate, has no SBOM", async () => {
    const old = `ghcr.io/acme/backend@${D("9")}`;
    expect((await dependencyChanges(allowed({ currentImageRef: old }), source, read))?.problem).toBe(
      `prod's current image has no verified SBOM (the registry holds no SPDX SBOM attestation for ${D("9")}): nothing to compare with`,
    );
    expect((await dependencyChanges({ allowed: false, fromStack: "s", reasons: [{ code: "unsigned", output: "supplyChain.signature", problem: "p", fix: "f", overridable: true }], imageRef: old }, source, read))?.problem).toMatch(/^the candidate has no verified SBOM/);
  });

  it("has nothing to read without a registry, without prod's registry config, or without a candidate", async () => {
    expect((await dependencyChanges(allowed({ imageRef: D("c"), currentImageRef: D("0") }), undefined, read))?.problem).toBe("no registry: the image stays on one Docker host, unsigned and without an SBOM");
    expect((await dependencyChanges(allowed(), undefined, read))?.problem).toContain("--sbom-config");
    expect(await dependencyChanges({ allowed: false, undecided: "preview failed" }, source, read)).toBeUndefined();
    expect(await dependencyChanges({ allowed: false, fromStack: "s", reasons: [{ code: "missing-output", output: "imageRef", problem: "p", fix: "f", overridable: false }] }, source, read)).toBeUndefined();
  });

  it("takes prod's registry, password and public key from its `pulumi config --show-secrets --json`", () => {
    const json = JSON.stringify({
      "backend-delivery:image": { value: '{"registry":{"server":"ghcr.io","username":"acme"}}', objectValue: { registry: { server: "ghcr.io", username: "acme" } }, secret: false },
      "backend-delivery:registryPassword": { value: "canary-registry-pw", secret: true },
      "backend-delivery:promotion": { value: "{}", objectValue: { signing: { publicKey: "PEM" } }, secret: false },
    });
    expect(sbomSourceFromConfigJson(json, "backend-delivery")).toEqual(source);
    expect(sbomSourceFromConfigJson(JSON.stringify({ "backend-delivery:environment": { value: "prod" } }), "backend-delivery")).toBeUndefined();
    expect(() => sbomSourceFromConfigJson(JSON.stringify({ "backend-delivery:image": { objectValue: { registry: { server: "ghcr.io", username: "acme" } } } }), "backend-delivery")).toThrow("registryPassword");
  });
});

describe("the comment: signature line and dependency changes, split and never cut", () => {
  // A document the real CLI wrote (test/fixtures/preview), with the verdict line of a signed promotion.
  const document = (verdict: PromotionVerdict): string => {
    const doc = JSON.parse(fs.readFileSync(path.join(__dirname, "fixtures/preview/prod-allowed.json"), "utf8")) as { diagnostics: { message: string }[] };
    doc.diagnostics = doc.diagnostics.map((d) => (d.message.includes("promotion verdict: ") ? { ...d, message: `${formatVerdict(verdict)}\n` } : d));
    return JSON.stringify(doc);
  };
  const verified = {
    status: "verified" as const,
    imageDigest: D("c"),
    signatureDigest: D("5"),
    attestationDigest: D("a"),
    sbom: { format: "spdx-json" as const, packages: 142 },
    publicKeyFingerprint: D("f"),
  };
  const verdict: PromotionVerdict = { allowed: true, fromStack: "organization/backend-delivery/staging", imageRef: CANDIDATE, imageDigest: D("c"), checkedAt: "2030-01-01T00:00:00.000Z", supplyChain: verified, currentImageRef: CURRENT };

  it("shows the verified signature, or that the image is unsigned", () => {
    const prod: StackPreview = { stack: "prod", json: document(verdict), exitCode: 0, promotion: true };
    const [body] = renderPreviewComment([prod]);
    expect(body).toContain(`**Signature: verified** with key \`sha256:ffffffffffff\` — signature \`${D("5")}\`, SBOM attestation \`${D("a")}\` (142 packages)`);
    const unsigned = { ...verdict, supplyChain: { status: "unsigned" as const, reason: "no registry (image.registry unset): the image stays on one Docker host, so it is neither signed nor verified" } };
    expect(renderPreviewComment([{ ...prod, json: document(unsigned) }])[0]).toContain("**Signature: UNSIGNED** — no registry (image.registry unset)");
  });

  it("splits a long dependency list into parts, every package in one of them", () => {
    const many = Array.from({ length: 3000 }, (_, i) => pkg("deb", `libexample-package-number-${i}`, `1.${i}.0-1+deb12u1`));
    const prod: StackPreview = { stack: "prod", json: document(verdict), exitCode: 0, promotion: true };
    const parts = renderPreviewComment([prod], { dependencies: { candidate: CANDIDATE, current: CURRENT, diff: diffSboms([], many) } });
    expect(parts.length).toBeGreaterThan(1);
    const all = parts.join("\n");
    for (const p of many) expect(all).toContain(`| \`${p.name}\` | Debian | ${p.version} |`);
    expect(parts[0]).toContain("3000 added, 0 removed, 0 changed");
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(65_536);
  });
});
