/**
 * Signing and verification for real: cosign and syft (pinned, from scripts/install-supply-chain-tools.sh)
 * against a throwaway registry with TLS from a CA of its own (trusted through the engine's certs.d,
 * never switched off) and htpasswd credentials. Staging's signing resource signs a pushed image and
 * attests its SBOM; the gate's check verifies it, and tells apart every way it can fail: unsigned,
 * signed by another key, a signature copied from another image, an SBOM attestation missing or altered
 * after signing. The SBOMs of two images are read back verified and compared as the pull-request
 * comment compares them. No key or password is ever on a command line. Needs the Docker engine, the
 * local base and registry images, cosign and syft; fails, never skips, without them.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { publicKeyFingerprint } from "../components/supplyChain/keys";
import { imageSignatureProvider, type ImageSignatureInputs, type ImageSignatureOutputs } from "../components/supplyChain/signature";
import { readSbom, verifyImage, type RegistryImage } from "../components/supplyChain/verify";
import { diffSboms } from "../scripts/lib/preview/sbomDiff";
import { LOCAL_PYTHON_BASE, docker, removeImages, requireDockerEngine, uniqueName } from "../support/docker";
import { LOCAL_REGISTRY_IMAGE, startRegistry, type Registry } from "../support/registry";
import { makeCosignKeys, type CosignKeys } from "../support/signingKeys";
import { copySignature, cosignTag, recordingTools, tamperAttestation, type RecordingTools } from "../support/supplyChain";

const MINUTE = 60_000;

let registry: Registry;
let keys: CosignKeys;
let otherKeys: CosignKeys;
let tools: RecordingTools;
let savedPath: string | undefined;
const repository = `supply-chain/${uniqueName("backend")}`;
const built: string[] = [];
/** A Docker CLI config of the test's own: its login never touches this machine's. */
let dockerConfig: string;

/** Builds a small image on the local base with Python packages of its own (a dist-info each) and pushes it; returns its pinned reference. */
async function pushImage(tag: string, packages: Record<string, string>): Promise<string> {
  const ref = `${registry.server}/${repository}:${tag}`;
  const site = "/opt/venv/lib/python3.11/site-packages";
  const lines = Object.entries(packages).map(
    ([name, version]) => `RUN mkdir -p ${site}/${name}-${version}.dist-info && printf 'Metadata-Version: 2.1\\nName: ${name}\\nVersion: ${version}\\n' > ${site}/${name}-${version}.dist-info/METADATA`,
  );
  await docker(["build", "--quiet", "--tag", ref, "-"], { input: [`FROM ${LOCAL_PYTHON_BASE}`, `RUN echo ${uniqueName("content")} > /content`, ...lines, ""].join("\n") });
  built.push(ref);
  await docker(["push", "--quiet", ref], { env: { DOCKER_CONFIG: dockerConfig } });
  const digests = JSON.parse((await docker(["image", "inspect", "--format", "{{json .RepoDigests}}", ref])).stdout) as string[];
  const pinned = digests.find((d) => d.startsWith(`${registry.server}/${repository}@`));
  if (pinned === undefined) throw new Error(`no repo digest for ${ref}`);
  return pinned;
}

function inputs(imageRef: string, signing: CosignKeys = keys): ImageSignatureInputs {
  return { imageRef, server: registry.server, username: registry.username, password: registry.password, privateKey: signing.privateKey, keyPassword: signing.password };
}

function image(imageRef: string): RegistryImage {
  return { imageRef, login: { server: registry.server, username: registry.username, password: registry.password } };
}

const digestOf = (ref: string) => ref.slice(ref.indexOf("@") + 1);

/** Signs and attests like `pulumi up` does: the provider's create. */
async function sign(imageRef: string, signing: CosignKeys = keys): Promise<ImageSignatureOutputs> {
  return (await imageSignatureProvider.create!(inputs(imageRef, signing))).outs as ImageSignatureOutputs;
}

let signedRef: string;
let signed: ImageSignatureOutputs;
let signMs: number;

beforeAll(async () => {
  for (const required of [LOCAL_PYTHON_BASE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(required);
  tools = recordingTools();
  savedPath = process.env.PATH;
  process.env.PATH = tools.path;
  [keys, otherKeys] = await Promise.all([makeCosignKeys(), makeCosignKeys()]);
  registry = await startRegistry();
  dockerConfig = mkdtempSync(join(tmpdir(), "docker-config-"));
  await docker(["login", "--username", registry.username, "--password-stdin", registry.server], { env: { DOCKER_CONFIG: dockerConfig }, input: registry.password });
  signedRef = await pushImage("v1", { "demo-pkg": "1.2.3", "kept-pkg": "2.0.0", "gone-pkg": "0.9" });
  const started = Date.now();
  signed = await sign(signedRef);
  signMs = Date.now() - started;
}, 5 * MINUTE);

afterAll(async () => {
  if (savedPath !== undefined) process.env.PATH = savedPath;
  await removeImages(...built);
  await registry?.stop();
  tools?.remove();
  if (dockerConfig !== undefined) rmSync(dockerConfig, { recursive: true, force: true });
});

describe("staging's signature, made by cosign and syft", () => {
  it("signs the pushed digest and attests its SPDX SBOM; the record names the manifests the registry holds", async () => {
    expect(signed.signatureDigest).toBe(await registry.manifestDigest(repository, cosignTag(digestOf(signedRef), "sig")));
    expect(signed.attestationDigest).toBe(await registry.manifestDigest(repository, cosignTag(digestOf(signedRef), "att")));
    expect(signed.publicKeyFingerprint).toBe(publicKeyFingerprint(keys.publicKey));
    expect(signed.publicKey.trim()).toBe(keys.publicKey.trim());
    // The base image's Debian packages and the image's own Python packages.
    expect(signed.sbomPackages).toBeGreaterThan(50);
    console.log(`sign + attest + SBOM of one image: ${(signMs / 1000).toFixed(1)} s, ${signed.sbomPackages} packages`);
  });

  it("never puts a key or password on a command line, and leaves no file behind", () => {
    const calls = tools.calls();
    expect(calls.map((c) => c.slice(0, 2).join(" "))).toEqual(expect.arrayContaining(["syft scan", "cosign sign", "cosign attest", "cosign public-key"]));
    const argv = JSON.stringify(calls);
    for (const secret of [keys.privateKey, keys.password, registry.password, ...keys.privateKey.split("\n").filter((l) => l.length > 20)]) {
      expect(argv.includes(secret)).toBe(false);
    }
    // The key travels as env://COSIGN_PRIVATE_KEY; the tools get the few variables they need, nothing of pulumi's.
    expect(tools.envNames()).toEqual(expect.arrayContaining(["COSIGN_PASSWORD", "COSIGN_PRIVATE_KEY", "DOCKER_CONFIG"]));
    expect(tools.envNames().filter((n) => n.startsWith("PULUMI"))).toEqual([]);
    expect(readdirSync(tmpdir()).filter((n) => /^backend-delivery-(cosign|syft)-/.test(n))).toEqual([]);
  });
});

describe("the gate's check of an image in the registry", () => {
  it("verifies a signed image with the public key: the same manifests, the SBOM's packages", async () => {
    const started = Date.now();
    const check = await verifyImage(image(signedRef), keys.publicKey);
    console.log(`verification of one image: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    expect(check.verified).toBe(true);
    if (!check.verified) return;
    expect(check.image.signatureDigest).toBe(signed.signatureDigest);
    expect(check.image.attestationDigest).toBe(signed.attestationDigest);
    expect(check.image.packages).toHaveLength(signed.sbomPackages);
    expect(check.image.packages).toContainEqual({ ecosystem: "pypi", name: "demo-pkg", version: "1.2.3" });
    expect(check.image.packages.some((p) => p.ecosystem === "deb" && p.name === "python3.11")).toBe(true);
  });

  it("an image never signed: unsigned, and no SBOM", async () => {
    const unsigned = await pushImage("unsigned", {});
    const check = await verifyImage(image(unsigned), keys.publicKey);
    expect(check).toEqual({
      verified: false,
      problems: [
        { code: "unsigned", problem: `the registry holds no signature for ${digestOf(unsigned)}` },
        { code: "sbom-missing", problem: `the registry holds no SPDX SBOM attestation for ${digestOf(unsigned)}` },
      ],
    });
  });

  it("an image signed by another key: both signature and SBOM refused", async () => {
    const check = await verifyImage(image(signedRef), otherKeys.publicKey);
    expect(check.verified === false && check.problems.map((p) => p.code)).toEqual(["signed-by-other-key", "sbom-invalid"]);
  });

  it("a signature copied from another image: made for another digest", async () => {
    const copy = await pushImage("copied", {});
    await copySignature(registry, repository, digestOf(signedRef), digestOf(copy));
    const check = await verifyImage(image(copy), keys.publicKey);
    expect(check.verified).toBe(false);
    if (check.verified) return;
    expect(check.problems[0]).toEqual({
      code: "signature-other-digest",
      problem: `the signature stored for ${digestOf(copy)} was made with this key for another image (${digestOf(signedRef)}): copied from it, not made for this one`,
    });
    expect(check.problems.map((p) => p.code)).toEqual(["signature-other-digest", "sbom-missing"]);
  });

  it("an SBOM altered after it was signed: the signature still verifies, the attestation does not; a refresh drops the record", async () => {
    const tampered = await pushImage("tampered", { "demo-pkg": "1.2.3" });
    const record = await sign(tampered);
    await tamperAttestation(registry, repository, digestOf(tampered), (statement) => {
      statement.predicate.packages.push({ name: "backdoor", SPDXID: "SPDXRef-Package-backdoor", versionInfo: "6.6.6" });
    });
    const check = await verifyImage(image(tampered), keys.publicKey);
    expect(check).toEqual({
      verified: false,
      problems: [
        {
          code: "sbom-invalid",
          problem: `the SBOM attestation of ${digestOf(tampered)} does not verify with promotion.signing.publicKey: changed after it was signed, or signed by another key`,
        },
      ],
    });
    // `pulumi up --refresh` on staging: the read finds it no longer verifying and drops it, so the update
    // signs again (which test/supplyChain.e2e.test.ts proves with the real engine).
    expect(await imageSignatureProvider.read!(`${tampered}#x`, record)).toEqual({});
    expect((await imageSignatureProvider.read!(`${signedRef}#x`, signed)).props).toEqual(signed);
  });

  it("reads two images' SBOMs, verified, and tells what changed between them", async () => {
    const next = await pushImage("v2", { "demo-pkg": "1.3.0", "kept-pkg": "2.0.0", "new-pkg": "0.1.0" });
    await sign(next);
    const [before, after] = await Promise.all([readSbom(image(signedRef), keys.publicKey), readSbom(image(next), keys.publicKey)]);
    expect(before.ok && after.ok).toBe(true);
    if (!before.ok || !after.ok) return;
    expect(diffSboms(before.packages, after.packages)).toEqual({
      added: [{ ecosystem: "pypi", name: "new-pkg", version: "0.1.0" }],
      removed: [{ ecosystem: "pypi", name: "gone-pkg", version: "0.9" }],
      changed: [{ ecosystem: "pypi", name: "demo-pkg", from: "1.2.3", to: "1.3.0" }],
    });
    // An image without an SBOM says so, rather than comparing against nothing.
    const bare = await readSbom(image(await pushImage("bare", {})), keys.publicKey);
    expect(bare.ok === false && bare.problem.code).toBe("sbom-missing");
  });
});
