/**
 * Why an image's signature or SBOM attestation did not verify, told apart from what the registry
 * holds: `cosign verify` and `cosign verify-attestation` only say yes or no, so when they say no the
 * gate downloads the signatures and attestations (`cosign download`) and this module checks each
 * against the public key and the digest itself, with Node's crypto: none at all, signed by another
 * key, made for another digest, or altered after signing. Pure: no I/O; the dynamic provider carries
 * it, so `require` inside.
 */
import { SPDX_PREDICATE_TYPE } from "./sbom";

/** What is wrong with the image's signature or SBOM; stable codes, shared with the gate's reasons. */
export type SignatureCode =
  | "unsigned"
  | "signed-by-other-key"
  | "signature-other-digest"
  | "sbom-missing"
  | "sbom-other-digest"
  | "sbom-invalid"
  | "signature-unverifiable";

/** One thing wrong, in one sentence. */
export interface SignatureProblem {
  code: SignatureCode;
  problem: string;
}

/** One line of `cosign download signature`: a simple-signing payload and its signature, base64. */
interface DownloadedSignature {
  Base64Signature?: unknown;
  Payload?: unknown;
}

/** One line of `cosign download attestation`: a DSSE envelope. */
interface Envelope {
  payloadType?: unknown;
  payload?: unknown;
  signatures?: { sig?: unknown }[];
}

/** The JSON objects of a tool's output, one per line; lines that are not JSON are skipped. */
export function jsonLines(text: string): unknown[] {
  const out: unknown[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim().startsWith("{")) continue;
    try {
      out.push(JSON.parse(line));
    } catch {
      // Not one of the tool's records.
    }
  }
  return out;
}

/** Whether `signature` (base64, ASN.1) over `data` verifies with the PEM public key. */
function verifies(publicKey: string, data: Buffer, signature: unknown): boolean {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { verify } = require("node:crypto") as typeof import("node:crypto");
  if (typeof signature !== "string" || signature === "") return false;
  try {
    return verify("sha256", data, publicKey, Buffer.from(signature, "base64"));
  } catch {
    return false;
  }
}

/** DSSE's pre-authentication encoding: what an envelope's signatures sign (https://github.com/secure-systems-lab/dsse). */
export function dssePae(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, "utf8");
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

/**
 * Why the image `digest` has no signature that verifies with `publicKey`, from what
 * `cosign download signature` printed (`found` false when it found no signatures at all).
 */
export function classifySignatures(downloaded: string, found: boolean, digest: string, publicKey: string): SignatureProblem {
  const signatures = found ? (jsonLines(downloaded) as DownloadedSignature[]) : [];
  if (signatures.length === 0) return { code: "unsigned", problem: `the registry holds no signature for ${digest}` };
  let forThis = 0;
  const otherDigests = new Set<string>();
  for (const s of signatures) {
    if (typeof s.Payload !== "string") continue;
    const payload = Buffer.from(s.Payload, "base64");
    if (!verifies(publicKey, payload, s.Base64Signature)) continue;
    let named: unknown;
    try {
      named = (JSON.parse(payload.toString("utf8")) as { critical?: { image?: Record<string, unknown> } }).critical?.image?.["docker-manifest-digest"];
    } catch {
      named = undefined;
    }
    if (named === digest) forThis++;
    else otherDigests.add(String(named));
  }
  if (forThis === 0 && otherDigests.size > 0) {
    return {
      code: "signature-other-digest",
      problem: `the signature stored for ${digest} was made with this key for another image (${[...otherDigests].join(", ")}): copied from it, not made for this one`,
    };
  }
  if (forThis === 0) {
    const count = signatures.length === 1 ? "its 1 signature does" : `none of its ${signatures.length} signatures does`;
    return { code: "signed-by-other-key", problem: `${digest} is signed, but ${count} not verify with promotion.signing.publicKey: signed by another key` };
  }
  return { code: "signature-unverifiable", problem: `a signature of ${digest} verifies with the key, but cosign refused it` };
}

/**
 * Why the image `digest` has no SPDX SBOM attestation that verifies with `publicKey`, from what
 * `cosign download attestation` printed.
 */
export function classifyAttestations(downloaded: string, found: boolean, digest: string, publicKey: string): SignatureProblem {
  const envelopes = found ? (jsonLines(downloaded) as Envelope[]) : [];
  let sboms = 0;
  let valid = 0;
  const otherDigests = new Set<string>();
  for (const envelope of envelopes) {
    if (typeof envelope.payload !== "string" || typeof envelope.payloadType !== "string") continue;
    const payload = Buffer.from(envelope.payload, "base64");
    let statement: { predicateType?: unknown; subject?: { digest?: { sha256?: unknown } }[] };
    try {
      statement = JSON.parse(payload.toString("utf8")) as typeof statement;
    } catch {
      sboms++;
      continue;
    }
    if (statement.predicateType !== SPDX_PREDICATE_TYPE) continue;
    sboms++;
    const pae = dssePae(envelope.payloadType, payload);
    if (!(envelope.signatures ?? []).some((s) => verifies(publicKey, pae, s.sig))) continue;
    valid++;
    const subjects = (statement.subject ?? []).map((s) => `sha256:${String(s.digest?.sha256)}`);
    if (!subjects.includes(digest)) for (const s of subjects) otherDigests.add(s);
  }
  if (sboms === 0) {
    return { code: "sbom-missing", problem: `the registry holds no SPDX SBOM attestation for ${digest}${envelopes.length > 0 ? ` (only ${envelopes.length} of other types)` : ""}` };
  }
  if (valid === 0) {
    return {
      code: "sbom-invalid",
      problem: `the SBOM attestation of ${digest} does not verify with promotion.signing.publicKey: changed after it was signed, or signed by another key`,
    };
  }
  if (otherDigests.size > 0) {
    return { code: "sbom-other-digest", problem: `the SBOM attestation stored for ${digest} is about another image (${[...otherDigests].join(", ")})` };
  }
  return { code: "signature-unverifiable", problem: `an SBOM attestation of ${digest} verifies with the key, but cosign refused it` };
}
