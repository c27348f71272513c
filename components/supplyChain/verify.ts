/**
 * Verifies an image in its registry the way prod's gate needs it: `cosign verify` (signed by the
 * key) and `cosign verify-attestation --type spdxjson` (an SBOM attestation signed by it), both with
 * the public key only and without a transparency log (`--insecure-ignore-tlog=true`: none can be
 * reached here, and a private registry is the norm), on the classic `.sig`/`.att` tags. When either
 * says no, what the registry holds is downloaded and classified (classify.ts) so the refusal says
 * why. The verified attestation is read back for its packages: the same SBOM the pull-request
 * comment compares. The signing resource's provider carries these functions: Node globals and
 * `require` only.
 */
import { dockerClient, type DockerEndpoint } from "../docker/client";
import type { RegistryLogin } from "../docker/preflight";
import { classifyAttestations, classifySignatures, jsonLines, type SignatureProblem } from "./classify";
import { publicKeyFingerprint } from "./keys";
import { SPDX_PREDICATE_TYPE, sbomPackages, type SbomPackage } from "./sbom";
import { cosignRegistryFlags, runTool, toolError } from "./tools";

/** An image in a registry, and how to reach it. */
export interface RegistryImage {
  /** `<repo>@sha256:<digest>`. */
  imageRef: string;
  /** Credentials that may read it (and, for signing, push). */
  login: RegistryLogin;
  /** The Docker engine asked for the digests of the signature and attestation manifests. */
  docker?: DockerEndpoint;
}

/** What a verified image carries. */
export interface VerifiedImage {
  /** Digest of the signature manifest (the `.sig` tag). */
  signatureDigest: string;
  /** Digest of the attestation manifest (the `.att` tag). */
  attestationDigest: string;
  /** The packages of the verified SBOM. */
  packages: SbomPackage[];
  publicKeyFingerprint: string;
}

/** The answer for one image: verified, or every problem found. */
export type ImageVerification = { verified: true; image: VerifiedImage } | { verified: false; problems: SignatureProblem[] };

/** The SBOM of an image, verified, or why there is none. */
export type SbomRead = { ok: true; packages: SbomPackage[] } | { ok: false; problem: SignatureProblem };

/** The repository and digest of a pinned reference. */
function split(imageRef: string): { repository: string; digest: string } {
  const at = imageRef.lastIndexOf("@");
  if (at === -1 || !/^sha256:[0-9a-f]{64}$/.test(imageRef.slice(at + 1))) throw new Error(`${imageRef} is not pinned as <repo>@sha256:<digest>`);
  return { repository: imageRef.slice(0, at), digest: imageRef.slice(at + 1) };
}

/** cosign's verify flags for a public key written as `cosign.pub` into the run's private folder. */
function verifyFlags(server: string): string[] {
  return ["--key", "{dir}/cosign.pub", "--insecure-ignore-tlog=true", "--new-bundle-format=false", ...cosignRegistryFlags(server)];
}

/** The digest of the manifest cosign stores a signature (`sig`) or attestation (`att`) of `imageRef` under. */
export async function artifactDigest(image: RegistryImage, kind: "sig" | "att"): Promise<string> {
  const { repository, digest } = split(image.imageRef);
  const tag = `${repository}:${digest.replace(":", "-")}.${kind}`;
  const { login } = image;
  const found = await dockerClient(image.docker?.host, image.docker?.sshOpts)
    .getImage(tag)
    .distribution({ authconfig: { username: login.username, password: login.password, serveraddress: login.server } });
  return (found as { Descriptor: { digest: string } }).Descriptor.digest;
}

/** Whether `cosign download` found nothing at all (rather than failing to ask). */
function foundNothing(stderr: string): boolean {
  return /no signatures associated|no attestations associated|not found|MANIFEST_UNKNOWN/i.test(stderr);
}

/** The image's SPDX SBOM attestation, verified with `publicKey`, or why there is none that verifies. */
export async function readSbom(image: RegistryImage, publicKey: string): Promise<SbomRead> {
  const { digest } = split(image.imageRef);
  const files = { "cosign.pub": publicKey };
  const verified = await runTool("cosign", ["verify-attestation", "--type", "spdxjson", ...verifyFlags(image.login.server), image.imageRef], { registry: image.login, files });
  if (verified.code === 0) {
    for (const envelope of jsonLines(verified.stdout) as { payload?: string }[]) {
      const statement = JSON.parse(Buffer.from(envelope.payload ?? "", "base64").toString("utf8")) as { predicateType?: string; predicate?: unknown };
      if (statement.predicateType === SPDX_PREDICATE_TYPE) return { ok: true, packages: sbomPackages(statement.predicate) };
    }
    return { ok: false, problem: { code: "sbom-missing", problem: `cosign verified no SPDX SBOM attestation of ${digest}` } };
  }
  const downloaded = await runTool("cosign", ["download", "attestation", ...cosignRegistryFlags(image.login.server), image.imageRef], { registry: image.login });
  if (downloaded.code !== 0 && !foundNothing(downloaded.stderr)) {
    return { ok: false, problem: { code: "signature-unverifiable", problem: `cosign could not check the SBOM attestation of ${digest}: ${toolError(verified)}` } };
  }
  return { ok: false, problem: classifyAttestations(downloaded.stdout, downloaded.code === 0, digest, publicKey) };
}

/** Why the image has no signature that verifies with `publicKey`, or undefined when it has one. */
async function signatureProblem(image: RegistryImage, publicKey: string): Promise<SignatureProblem | undefined> {
  const { digest } = split(image.imageRef);
  const files = { "cosign.pub": publicKey };
  const verified = await runTool("cosign", ["verify", ...verifyFlags(image.login.server), image.imageRef], { registry: image.login, files });
  if (verified.code === 0) return undefined;
  const downloaded = await runTool("cosign", ["download", "signature", ...cosignRegistryFlags(image.login.server), image.imageRef], { registry: image.login });
  if (downloaded.code !== 0 && !foundNothing(downloaded.stderr)) {
    return { code: "signature-unverifiable", problem: `cosign could not check the signature of ${digest}: ${toolError(verified)}` };
  }
  const problem = classifySignatures(downloaded.stdout, downloaded.code === 0, digest, publicKey);
  // A signature that verifies for this digest is no signature problem: what cosign itself said is.
  return problem.code === "signature-unverifiable" ? { ...problem, problem: `cosign could not verify ${image.imageRef}: ${toolError(verified)}` } : problem;
}

/**
 * Verifies that `image` is signed by the key `publicKey` and carries an SPDX SBOM attestation signed
 * by it. Never throws for what the registry holds: every problem is in the answer. Rejects only when
 * cosign cannot run at all (not installed: the message says how to install it).
 */
export async function verifyImage(image: RegistryImage, publicKey: string): Promise<ImageVerification> {
  const [signature, sbom] = await Promise.all([signatureProblem(image, publicKey), readSbom(image, publicKey)]);
  const problems = [...(signature === undefined ? [] : [signature]), ...(sbom.ok ? [] : [sbom.problem])];
  if (problems.length > 0 || !sbom.ok) return { verified: false, problems };
  const [signatureDigest, attestationDigest] = await Promise.all([artifactDigest(image, "sig"), artifactDigest(image, "att")]);
  return { verified: true, image: { signatureDigest, attestationDigest, packages: sbom.packages, publicKeyFingerprint: publicKeyFingerprint(publicKey) } };
}
