/**
 * The prod promotion gate: reads the staging stack's outputs (stackOutputs.ts), asks
 * {@link decidePromotion} whether its image may be promoted, and throws before any prod resource
 * is constructed when the answer is no. The program awaits {@link resolvePromotion} at its entry,
 * because a check inside an `apply` would run only after resources had been registered.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PromotionOverride } from "../contract";
import { nextPreviousImageRef, type ReleaseHistory } from "../release/history";
import { StackReadError, readStackOutputs } from "../stackOutputs";
import { decidePromotion, type ProdCertificate, type PromotionDecision } from "./decide";
import { REQUIRED_OUTPUTS, type StagingOutputs } from "./readStaging";
import { formatReasons, formatVerdict, refusalMessage, type PromotionReason, type PromotionVerdict } from "./reasons";

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
  const decision: PromotionDecision =
    "notFound" in staging
      ? { allowed: false, reasons: [staging.notFound] }
      : decidePromotion(staging.outputs, policy, new Date());

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
  const verdict: PromotionVerdict = { allowed: false, fromStack: args.fromStack, reasons: [...decision.reasons] };
  pulumi.log.info(formatVerdict(verdict), gate);
  throw new pulumi.RunError(refusalMessage(verdict, args.override !== undefined));
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
