/**
 * The prod promotion gate: reads the staging stack through a `StackReference`, asks
 * {@link decidePromotion} whether its image may be promoted, and throws before any prod resource
 * is constructed when the answer is no. The program awaits {@link resolvePromotion} at its entry,
 * because a check inside an `apply` would run only after resources had been registered.
 */
import * as pulumi from "@pulumi/pulumi";
import {
  REQUIRED_OUTPUTS,
  decidePromotion,
  formatReason,
  type OutputDetails,
  type PromotionDecision,
  type PromotionReason,
  type StagingOutputs,
} from "./promotion";

/** A recorded break-glass approval for a promotion the gate would otherwise refuse. */
export interface PromotionOverride {
  /** Why prod must take this image anyway (an incident number, a sentence). */
  reason: string;
  /** Who approved it. */
  approvedBy: string;
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
  /** The `imageRef` prod exported before this update: the rollback target; absent on first deploy. */
  previousImageRef?: string;
}

/** Reads the staging stack (and prod's own previous outputs) for the promotion decision. */
export class PromotionGate extends pulumi.ComponentResource {
  /** The staging stack promoted from. */
  readonly staging: pulumi.StackReference;
  /** This stack's own outputs from its last update, for the rollback record. */
  readonly previous: pulumi.StackReference;

  constructor(name: string, args: PromotionGateArgs, opts: pulumi.ComponentResourceOptions = {}) {
    checkArgs(args);
    super("backend-delivery:index:PromotionGate", name, {}, opts);
    this.staging = new pulumi.StackReference(`${name}-staging`, { name: args.fromStack }, { parent: this });
    // A stack may read its own last outputs through a reference to itself (pulumi/pulumi#3722):
    // that is what prod ran before this update.
    this.previous = new pulumi.StackReference(`${name}-previous`, { name: currentStackName() }, { parent: this });
    this.registerOutputs({});
  }
}

/**
 * Constructs the gate, reads staging, decides, and returns the approved image; throws one error
 * listing every reason (and its fix) when the promotion is refused.
 */
export async function resolvePromotion(
  name: string,
  args: PromotionGateArgs,
  opts: pulumi.ComponentResourceOptions = {},
): Promise<ApprovedPromotion> {
  const gate = new PromotionGate(name, args, opts);
  const [staging, previousImageRef] = await Promise.all([
    readStaging(gate.staging, args.fromStack),
    readPreviousImageRef(gate.previous, gate),
  ]);
  const decision: PromotionDecision =
    "notFound" in staging
      ? { allowed: false, reasons: [staging.notFound] }
      : decidePromotion(staging.outputs, args, new Date());

  const approved = (override?: PromotionOverride): ApprovedPromotion => {
    const outputs = "outputs" in staging ? staging.outputs : {};
    const readiness = outputs.readiness?.value as { checkedAt?: unknown } | undefined;
    return {
      imageRef: outputs.imageRef?.value as string,
      imageDigest: outputs.imageDigest?.value as string,
      checkedAt: typeof readiness?.checkedAt === "string" ? readiness.checkedAt : "unchecked",
      stack: args.fromStack,
      ...(override === undefined ? {} : { override: { reason: override.reason, approvedBy: override.approvedBy } }),
      ...(previousImageRef === undefined ? {} : { previousImageRef }),
    };
  };

  if (decision.allowed) {
    if (args.override !== undefined) {
      pulumi.log.warn(
        "promotion.override is set but not needed: staging passed every check. Remove it so it cannot " +
          "wave a later, bad promotion through: `pulumi config rm --path promotion.override`",
        gate,
      );
    }
    return approved();
  }
  const blocking = decision.reasons.filter((r) => !r.overridable);
  if (args.override !== undefined && blocking.length === 0) {
    pulumi.log.warn(
      `PROMOTION OVERRIDE: prod takes ${String(approved().imageRef)} from ${args.fromStack} although the gate ` +
        `refused it, approved by ${JSON.stringify(args.override.approvedBy)} because ` +
        `${JSON.stringify(args.override.reason)}. Overridden:\n${decision.reasons.map(formatReason).join("\n")}\n` +
        "The override is recorded in the stack output `promotionOverride`; remove it after the emergency: " +
        "`pulumi config rm --path promotion.override`",
      gate,
    );
    return approved(args.override);
  }
  throw new pulumi.RunError(blockedMessage(args, decision.reasons, blocking));
}

function blockedMessage(
  args: PromotionGateArgs,
  reasons: readonly PromotionReason[],
  blocking: readonly PromotionReason[],
): string {
  const count = reasons.length === 1 ? "1 reason" : `${reasons.length} reasons`;
  const lines = [
    `prod promotion from ${args.fromStack} refused (${count}); no prod resource was touched:`,
    ...reasons.map(formatReason),
  ];
  if (args.override !== undefined) {
    lines.push(
      `promotion.override cannot lift: ${blocking.map((r) => r.output).join(", ")} ` +
        "(prod would have no trustworthy image to run).",
    );
  }
  return lines.join("\n");
}

/** Rejects args the gate cannot act on, naming the config key and the fix. */
function checkArgs(args: PromotionGateArgs): void {
  const problems: string[] = [];
  if (typeof args.fromStack !== "string" || args.fromStack.trim() === "") {
    problems.push(
      "promotion.fromStack is empty: `pulumi config set --path promotion.fromStack <organization>/<project>/staging`",
    );
  }
  if (args.override !== undefined) {
    for (const field of ["reason", "approvedBy"] as const) {
      const value: unknown = args.override[field];
      if (typeof value !== "string" || value.trim() === "") {
        problems.push(
          `promotion.override.${field} is missing or empty; an override needs both reason and approvedBy: ` +
            `\`pulumi config set --path promotion.override.${field} <text>\` ` +
            "(or drop the override: `pulumi config rm --path promotion.override`)",
        );
      }
    }
  }
  if (problems.length > 0) throw new pulumi.RunError(`invalid promotion settings:\n- ${problems.join("\n- ")}`);
}

/** `<organization>/<project>/<stack>` of the stack being updated. */
function currentStackName(): string {
  let organization: string;
  try {
    organization = pulumi.getOrganization();
  } catch {
    // The file backend's organization is always the constant "organization".
    organization = "organization";
  }
  return `${organization}/${pulumi.getProject()}/${pulumi.getStack()}`;
}

type StagingRead = { outputs: StagingOutputs } | { notFound: PromotionReason };

async function readStaging(ref: pulumi.StackReference, fromStack: string): Promise<StagingRead> {
  try {
    const entries = await Promise.all(
      REQUIRED_OUTPUTS.map(async (output): Promise<[string, OutputDetails]> => [
        output,
        await ref.getOutputDetails(output),
      ]),
    );
    return { outputs: Object.fromEntries(entries) };
  } catch (error) {
    return {
      notFound: {
        code: "stack-not-found",
        output: "promotion.fromStack",
        problem: `staging stack ${fromStack} not found or unreadable (${firstLine(error)})`,
        fix:
          `create it and deploy it: \`pulumi stack init ${fromStack}\` then \`pulumi up --stack ${fromStack}\`, ` +
          "or point `promotion.fromStack` at the staging stack",
        overridable: false,
      },
    };
  }
}

async function readPreviousImageRef(
  ref: pulumi.StackReference,
  gate: pulumi.Resource,
): Promise<string | undefined> {
  try {
    const details = await ref.getOutputDetails("imageRef");
    if (details.secretValue !== undefined) {
      pulumi.log.warn("the previous `imageRef` output is a secret; previousImageRef is left out", gate);
      return undefined;
    }
    return typeof details.value === "string" ? details.value : undefined;
  } catch (error) {
    pulumi.log.warn(`could not read this stack's previous outputs, previousImageRef is left out: ${firstLine(error)}`, gate);
    return undefined;
  }
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split("\n")[0] ?? message;
}
