/**
 * Why a signature or SBOM attestation does not verify, told apart without cosign: the records
 * `cosign download` prints, made here with Node's crypto in cosign's formats (a simple-signing
 * payload signed with ECDSA P-256, a DSSE envelope over an in-toto statement), each classified. The
 * same cases against the real cosign and registry are in test/supplyChain.docker.test.ts. Also the
 * key's checks and fingerprint, and what a tool's error line is.
 */
import { createPublicKey, generateKeyPairSync, sign } from "node:crypto";
import { describe, expect, it } from "vitest";
import { classifyAttestations, classifySignatures, dssePae } from "../components/supplyChain/classify";
import { publicKeyFingerprint, publicKeyProblem, shortFingerprint } from "../components/supplyChain/keys";
import { SPDX_PREDICATE_TYPE } from "../components/supplyChain/sbom";
import { toolError } from "../components/supplyChain/tools";

const D = (c: string) => `sha256:${c.repeat(64)}`;
const ours = generateKeyPairSync("ec", { namedCurve: "P-256" });
const theirs = generateKeyPairSync("ec", { namedCurve: "P-256" });
const PUBLIC = ours.publicKey.export({ type: "spki", format: "pem" }).toString();

/** One line of `cosign download signature` for `digest`, signed with `key`. */
function signatureLine(digest: string, key = ours.privateKey): string {
  const payload = Buffer.from(JSON.stringify({ critical: { identity: { "docker-reference": "r/backend" }, image: { "docker-manifest-digest": digest }, type: "cosign container image signature" }, optional: null }));
  return JSON.stringify({ Base64Signature: sign("sha256", payload, key).toString("base64"), Payload: payload.toString("base64") });
}

/** One line of `cosign download attestation`: an SPDX statement about `digest`, signed with `key`. */
function attestationLine(digest: string, options: { key?: typeof ours.privateKey; predicateType?: string; tamper?: boolean } = {}): string {
  const statement = { _type: "https://in-toto.io/Statement/v0.1", subject: [{ name: "r/backend", digest: { sha256: digest.slice(7) } }], predicateType: options.predicateType ?? SPDX_PREDICATE_TYPE, predicate: { spdxVersion: "SPDX-2.3", packages: [] } };
  const payload = Buffer.from(JSON.stringify(statement));
  const type = "application/vnd.in-toto+json";
  const sig = sign("sha256", dssePae(type, payload), options.key ?? ours.privateKey).toString("base64");
  const sent = options.tamper === true ? Buffer.from(JSON.stringify({ ...statement, predicate: { spdxVersion: "SPDX-2.3", packages: [{ name: "backdoor" }] } })) : payload;
  return JSON.stringify({ payloadType: type, payload: sent.toString("base64"), signatures: [{ keyid: "", sig }] });
}

describe("classifySignatures", () => {
  it("nothing in the registry: unsigned", () => {
    expect(classifySignatures("", false, D("a"), PUBLIC)).toEqual({ code: "unsigned", problem: `the registry holds no signature for ${D("a")}` });
  });

  it("signatures by another key only: signed by another key", () => {
    expect(classifySignatures(`${signatureLine(D("a"), theirs.privateKey)}\n${signatureLine(D("a"), theirs.privateKey)}`, true, D("a"), PUBLIC).code).toBe("signed-by-other-key");
  });

  it("our signature, but of another digest: copied from another image", () => {
    const copied = classifySignatures(signatureLine(D("b")), true, D("a"), PUBLIC);
    expect(copied.code).toBe("signature-other-digest");
    expect(copied.problem).toContain(`made with this key for another image (${D("b")})`);
  });

  it("our signature of this digest: not a signature problem (cosign's own error is reported)", () => {
    expect(classifySignatures(signatureLine(D("a")), true, D("a"), PUBLIC).code).toBe("signature-unverifiable");
  });
});

describe("classifyAttestations", () => {
  it.each([
    ["none at all", "", false, "sbom-missing"],
    ["only attestations of another type", attestationLine(D("a"), { predicateType: "https://slsa.dev/provenance/v1" }), true, "sbom-missing"],
    ["an SBOM altered after signing", attestationLine(D("a"), { tamper: true }), true, "sbom-invalid"],
    ["an SBOM signed by another key", attestationLine(D("a"), { key: theirs.privateKey }), true, "sbom-invalid"],
    ["our SBOM about another image", attestationLine(D("b")), true, "sbom-other-digest"],
    ["our SBOM about this image", attestationLine(D("a")), true, "signature-unverifiable"],
  ])("%s: %s", (_name, downloaded, found, code) => {
    expect(classifyAttestations(downloaded, found, D("a"), PUBLIC).code).toBe(code);
  });
});

describe("the public key", () => {
  it("is checked to be a PEM public key, never a private one", () => {
    expect(publicKeyProblem(PUBLIC)).toBeUndefined();
    expect(publicKeyProblem("ssh-ed25519 AAAA")).toContain("is not a PEM public key");
    expect(publicKeyProblem(ours.privateKey.export({ type: "pkcs8", format: "pem" }).toString())).toContain("holds a private key");
    expect(publicKeyProblem("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----")).toContain("is not a readable public key");
  });

  it("is named by the sha256 of its DER encoding, the same for any PEM spelling", () => {
    const fingerprint = publicKeyFingerprint(PUBLIC);
    expect(fingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(publicKeyFingerprint(PUBLIC.replace(/\n/g, "\r\n"))).toBe(fingerprint);
    expect(publicKeyFingerprint(createPublicKey(PUBLIC).export({ type: "spki", format: "pem" }).toString())).toBe(fingerprint);
    expect(shortFingerprint(fingerprint)).toBe(fingerprint.slice(0, 19));
  });
});

describe("toolError", () => {
  it("is cosign's Error line, without its deprecation and tlog notes", () => {
    const stderr = "Flag --tlog-upload has been deprecated, prefer ...\nWARNING: Skipping tlog verification is an insecure practice\nError: no matching signatures: invalid signature\nerror during command execution: no matching signatures: invalid signature\n";
    expect(toolError({ code: 1, stdout: "", stderr })).toBe("no matching signatures: invalid signature");
    expect(toolError({ code: 3, stdout: "", stderr: "" })).toBe("exit code 3");
  });
});
