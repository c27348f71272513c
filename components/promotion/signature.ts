/**
 * The gate's view of an image's signature and SBOM: what a verification in the registry found
 * (components/supplyChain/verify.ts), turned into refusal reasons with their fixes, and the record
 * prod keeps of it. Pure: no resources, no I/O.
 */
import type { SupplyChainRecord } from "../contract";
import type { SignatureProblem } from "../supplyChain/classify";
import { shortFingerprint } from "../supplyChain/keys";
import { installHint } from "../supplyChain/tools";
import type { ImageVerification } from "../supplyChain/verify";
import type { PromotionReason } from "./reasons";

/** What the single-host path records: no registry, so nowhere to keep a signature. */
export const UNSIGNED_WITHOUT_REGISTRY =
  "no registry (image.registry unset): the image stays on one Docker host, so it is neither signed nor verified";

/** The reasons a verification gives against promoting the image, each with its fix. */
export function signatureReasons(problems: readonly SignatureProblem[], fromStack: string, publicKeyFingerprint: string): PromotionReason[] {
  const resign =
    `run \`pulumi up --refresh --stack ${fromStack}\`: the refresh finds the image's signature or SBOM no longer verifying, ` +
    "and the update signs and attests the image again; find out who else wrote to the registry";
  const fixes: Record<SignatureProblem["code"], string> = {
    unsigned: `set up signing on staging once (\`npm run signing -- init\`), then run \`pulumi up --refresh --stack ${fromStack}\`: staging signs the image it runs and attests its SBOM`,
    "signed-by-other-key":
      `prod trusts the key ${shortFingerprint(publicKeyFingerprint)} (promotion.signing.publicKey): give prod staging's public key, ` +
      `whose fingerprint \`pulumi stack output --stack ${fromStack} supplyChain\` shows, or make a new pair for both with ` +
      `\`npm run signing -- init --force\` and run \`pulumi up --stack ${fromStack}\``,
    "signature-other-digest": resign,
    "sbom-missing": resign,
    "sbom-other-digest": resign,
    "sbom-invalid": resign,
    "signature-unverifiable": `fix what cosign reported (${installHint("cosign")}; the registry must answer to this stack's registryPassword), then run pulumi up again`,
  };
  return problems.map((p) => ({
    code: p.code,
    output: p.code.startsWith("sbom-") ? "supplyChain.sbom" : "supplyChain.signature",
    problem: p.problem,
    fix: fixes[p.code],
    overridable: true,
  }));
}

/** The record of a verification: what prod exports as `supplyChain` when it takes the image. */
export function verificationRecord(imageDigest: string, verification: ImageVerification | undefined, overridden: boolean): SupplyChainRecord {
  if (verification === undefined) return { status: "unsigned", reason: UNSIGNED_WITHOUT_REGISTRY };
  if (!verification.verified) {
    const what = verification.problems.map((p) => p.code).join(", ");
    return { status: "not-verified", reason: `${overridden ? "promotion.override lifted" : "refused"}: ${what}` };
  }
  const { image } = verification;
  return {
    status: "verified",
    imageDigest,
    signatureDigest: image.signatureDigest,
    attestationDigest: image.attestationDigest,
    sbom: { format: "spdx-json", packages: image.packages.length },
    publicKeyFingerprint: image.publicKeyFingerprint,
  };
}
