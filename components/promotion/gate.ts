/**
 * The prod promotion gate: reads the staging stack's outputs (stackOutputs.ts), asks
 * {@link decidePromotion} whether its image may be promoted, and throws before any prod resource
 * is constructed when the answer is no. The program awaits {@link resolvePromotion} at its entry,
 * because a check inside an `apply` would run only after resources had been registered.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PromotionOverride, SupplyChainRecord } from "../contract";
import { nextPreviousImageRef, type ReleaseHistory } from "../release/history";
import { StackReadError, readStackOutputs } from "../stackOutputs";
import type { ImageVerification } from "../supplyChain/verify";
import { decidePromotion, orderReasons, type ProdCertificate, type PromotionDecision } from "./decide";
import { REQUIRED_OUTPUTS, type StagingOutputs } from "./readStaging";
import { formatReasons, formatVerdict, refusalMessage, type PromotionReason, type PromotionVerdict } from "./reasons";
import { signatureReasons, verificationRecord } from "./signature";

/** How the gate verifies the image in the registry: prod's public key, and the check itself. */
export interface GateSigning {
  /** Fingerprint of `promotion.signing.publicKey`, for the fixes. */
  publicKeyFingerprint: string;
  /** Verifies the pinned `imageRef` in the registry (components/supplyChain/verify.ts). */
  verify: (imageRef: string) => Promise<ImageVerification>;
}

/** What the gate is held to; normally the prod stack's `promotion` config. */
export interface PromotionGateArgs {
  /** The staging stack to promote from, `<organization>/<project>/<stack>`. */
  fromStack: string;
  /** How old staging's readiness check may be, in hours. */
  maxAgeHours: number;
  /** Whether prod pulls through a registry; then staging's `imageRef` must be pinned by digest. */
  registry: boolean;
  /** Lets an otherwise blocked promotion through, with a loud warning; both fields required. */
  override?: PromotionOverride;
  /** What prod ran before this update: the rollback target follows from it, and a release it rolled back from is refused. */
  history: ReleaseHistory;
  /** The certificate prod serves after this update, where its proxy terminates TLS and it is known. */
  certificate?: ProdCertificate;
  /** Refuse while it expires within this many days. */
  minCertificateDays?: number;
  /** With a registry: the signature and SBOM check; fail closed when it is missing. Unused without one. */
  signing?: GateSigning;
}

/** The image the gate approved for prod, and the record of where it came from. */
export interface ApprovedPromotion {
  /** Staging's `imageRef`, exactly: what prod runs. */
  imageRef: string;
  /** Staging's `imageDigest`. */
  imageDigest: string;
  /** When staging's readiness check ran (ISO-8601), or "unchecked" when an override skipped it. */
  checkedAt: string;
  /** The stack promoted from. */
  stack: string;
  /** Present only when an override let a blocked promotion through. */
  override?: PromotionOverride;
  /** The last different image prod ran before this one: the rollback target; absent until there is one. */
  previousImageRef?: string;
  /** The image's signature and SBOM as verified, or why there are none. */
  supplyChain: SupplyChainRecord;
}

/**
 * The gate as a resource of its own, so that its verdict and warnings are attached to it. It holds
 * no state: the stacks are read with the engine's `readStackOutputs` (see stackOutputs.ts).
 */
export class PromotionGate extends pulumi.ComponentResource {
  constructor(name: string, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:PromotionGate", name, {}, opts);
    this.registerOutputs({});
  }
}

/**
 * Constructs the gate, reads staging, decides, logs the verdict (the line the pull-request comment
 * reads back) and returns the approved image; throws one error listing every reason (and its fix)
 * when the promotion is refused.
 */
export async function resolvePromotion(
  name: string,
  args: PromotionGateArgs,
  opts: pulumi.ComponentResourceOptions = {},
): Promise<ApprovedPromotion> {
  const gate = new PromotionGate(name, opts);
  const previous = args.history;
  const staging = await readStaging(args.fromStack);
  const policy = {
    fromStack: args.fromStack,
    maxAgeHours: args.maxAgeHours,
    registry: args.registry,
    ...(previous.rollback === undefined ? {} : { rolledBackFrom: previous.rollback }),
    ...(args.certificate === undefined ? {} : { certificate: args.certificate }),
    ...(args.minCertificateDays === undefined ? {} : { minCertificateDays: args.minCertificateDays }),
  };
  const base: PromotionDecision =
    "notFound" in staging
      ? { allowed: false, reasons: [staging.notFound] }
      : decidePromotion(staging.outputs, policy, new Date());
  const offered = "outputs" in staging ? staging.outputs.imageRef?.value : undefined;
  const candidate = typeof offered === "string" && /^[^\s@]+@sha256:[0-9a-f]{64}$/.test(offered) ? offered : undefined;
  const signature = args.registry ? await verifySignature(args, candidate) : { reasons: [] };
  const all = orderReasons([...base.reasons, ...signature.reasons]);
  const decision: PromotionDecision = { allowed: all.length === 0, reasons: all };
  const current = previous.imageRef === undefined ? {} : { currentImageRef: previous.imageRef };

  const approved = (override?: PromotionOverride): ApprovedPromotion => {
    const outputs = "outputs" in staging ? staging.outputs : {};
    const readiness = outputs.readiness?.value as { checkedAt?: unknown } | undefined;
    const imageRef = outputs.imageRef?.value as string;
    const previousImageRef = nextPreviousImageRef(previous, imageRef);
    return {
      imageRef,
      imageDigest: outputs.imageDigest?.value as string,
      checkedAt: typeof readiness?.checkedAt === "string" ? readiness.checkedAt : "unchecked",
      stack: args.fromStack,
      ...(override === undefined ? {} : { override: { reason: override.reason, approvedBy: override.approvedBy } }),
      ...(previousImageRef === undefined ? {} : { previousImageRef }),
      supplyChain: verificationRecord(outputs.imageDigest?.value as string, signature.verification, override !== undefined),
    };
  };
  const allow = (override?: PromotionOverride): ApprovedPromotion => {
    const image = approved(override);
    const verdict: PromotionVerdict = {
      allowed: true,
      fromStack: args.fromStack,
      imageRef: image.imageRef,
      imageDigest: image.imageDigest,
      checkedAt: image.checkedAt,
      ...(image.override === undefined ? {} : { override: image.override, overridden: [...decision.reasons] }),
      supplyChain: image.supplyChain,
      ...current,
    };
    pulumi.log.info(formatVerdict(verdict), gate);
    return image;
  };

  if (decision.allowed) {
    if (args.override !== undefined) {
      pulumi.log.warn(
        "promotion.override is set but not needed: staging passed every check. Remove it so it cannot " +
          "wave a later, bad promotion through: `pulumi config rm --path promotion.override`",
        gate,
      );
    }
    return allow();
  }
  const blocking = decision.reasons.filter((r) => !r.overridable);
  if (args.override !== undefined && blocking.length === 0) {
    pulumi.log.warn(
      `PROMOTION OVERRIDE: prod takes ${String(approved().imageRef)} from ${args.fromStack} although the gate ` +
        `refused it, approved by ${JSON.stringify(args.override.approvedBy)} because ` +
        `${JSON.stringify(args.override.reason)}. Overridden:\n${formatReasons(decision.reasons)}\n` +
        "The override is recorded in the stack output `promotionOverride`; remove it after the emergency: " +
        "`pulumi config rm --path promotion.override`",
      gate,
    );
    return allow(args.override);
  }
  const verdict: PromotionVerdict = {
    allowed: false,
    fromStack: args.fromStack,
    reasons: [...decision.reasons],
    ...(typeof offered === "string" && offered.trim() !== "" ? { imageRef: offered } : {}),
    ...current,
  };
  pulumi.log.info(formatVerdict(verdict), gate);
  throw new pulumi.RunError(refusalMessage(verdict, args.override !== undefined));
}

/**
 * The signature and SBOM check of the image staging offers, with a registry. Fail closed: no key to
 * verify with, or a check that cannot run, is a reason too. Skipped when `imageRef` is not pinned
 * (that is a reason of its own already).
 */
async function verifySignature(args: PromotionGateArgs, imageRef: string | undefined): Promise<{ reasons: PromotionReason[]; verification?: ImageVerification }> {
  if (imageRef === undefined) return { reasons: [] };
  if (args.signing === undefined) {
    const problem = { code: "signature-unverifiable" as const, problem: "prod has no promotion.signing.publicKey to verify staging's image with" };
    return { reasons: signatureReasons([problem], args.fromStack, "sha256:none") };
  }
  let verification: ImageVerification;
  try {
    verification = await args.signing.verify(imageRef);
  } catch (error) {
    // A refusal of its own (the registry refused prod's credentials, the digest is gone) says what to do already.
    if (error instanceof pulumi.RunError) throw error;
    verification = { verified: false, problems: [{ code: "signature-unverifiable", problem: `the signature of ${imageRef} could not be checked: ${(error as Error).message}` }] };
  }
  const reasons = verification.verified ? [] : signatureReasons(verification.problems, args.fromStack, args.signing.publicKeyFingerprint);
  return { reasons, verification };
}

type StagingRead = { outputs: StagingOutputs } | { notFound: PromotionReason };

async function readStaging(fromStack: string): Promise<StagingRead> {
  try {
    const outputs = await readStackOutputs(fromStack);
    return { outputs: Object.fromEntries(REQUIRED_OUTPUTS.map((name) => [name, outputs[name] ?? {}])) };
  } catch (error) {
    if (!(error instanceof StackReadError)) throw error;
    return {
      notFound: {
        code: "stack-not-found",
        output: "promotion.fromStack",
        problem: `staging stack ${fromStack} not found or unreadable (${error.message})`,
        fix:
          `create it and deploy it: \`pulumi stack init ${fromStack}\` then \`pulumi up --stack ${fromStack}\`, ` +
          "or point `promotion.fromStack` at the staging stack",
        overridable: false,
      },
    };
  }
}
