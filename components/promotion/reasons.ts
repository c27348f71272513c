/**
 * Why a promotion is refused, and the gate's verdict, as data: the reason codes, one reason's
 * shape, and the one line the gate logs in `pulumi up` and `pulumi preview` that the pull-request
 * comment reads back from `pulumi preview --json`. The gate writes it with {@link formatVerdict};
 * readers use {@link readVerdict}; nobody parses the gate's prose. Pure module: no resources.
 */
import { z } from "zod";
import { Digest, ImageRef, PromotionOverride, SupplyChainRecord } from "../contract";
import { formatLogLine, readLogLine } from "../logLine";
import { formatProblemList, formatRefusal, type Problem } from "../problems";

/** What starts the verdict line; everything after it is the verdict as JSON. */
export const VERDICT_PREFIX = "promotion verdict: ";

/** Why a promotion is refused; stable codes so callers and tests can tell reasons apart. */
export const ReasonCode = z.enum([
  "stack-not-found",
  "missing-output",
  "secret-output",
  "invalid-output",
  "wrong-environment",
  "not-ready",
  "digest-mismatch",
  "unpinned-ref",
  "ref-digest-mismatch",
  "rolled-back-image",
  "checked-in-future",
  "stale-readiness",
  "root-user",
  "writable-root",
  "capabilities-kept",
  "new-privileges-allowed",
  "certificate-expiring",
  // The image in the registry, verified against promotion.signing.publicKey (supplyChain/classify.ts).
  "unsigned",
  "signed-by-other-key",
  "signature-other-digest",
  "sbom-missing",
  "sbom-other-digest",
  "sbom-invalid",
  "signature-unverifiable",
]);
export type ReasonCode = z.infer<typeof ReasonCode>;

/** One reason a promotion is refused: the output at fault, what is wrong, the fix. */
export const PromotionReason = z.object({
  code: ReasonCode,
  /** The output (or output field) at fault, e.g. `readiness.hardening.user`. */
  output: z.string(),
  /** What is wrong, in one sentence. */
  problem: z.string(),
  /** The command or change that fixes it. */
  fix: z.string(),
  /**
   * Whether a recorded break-glass override may lift it. Reasons that leave prod without a
   * trustworthy image to run (no image reference, no staging stack) can never be overridden.
   */
  overridable: z.boolean(),
});
export type PromotionReason = z.infer<typeof PromotionReason>;


/** The gate's answer for one update or preview of prod. */
export const PromotionVerdict = z.discriminatedUnion("allowed", [
  z.object({
    allowed: z.literal(true),
    /** The staging stack promoted from. */
    fromStack: z.string(),
    /** What prod runs: staging's `imageRef`. */
    imageRef: z.string(),
    imageDigest: Digest,
    /** When staging's readiness check ran, or "unchecked" when an override let a stack without one through. */
    checkedAt: z.string(),
    /** Set when a recorded override let an otherwise refused promotion through. */
    override: PromotionOverride.optional(),
    /** What the override lifted. */
    overridden: z.array(PromotionReason).optional(),
    /** The image's signature and SBOM as the gate verified them, or why it is unsigned. */
    supplyChain: SupplyChainRecord.optional(),
    /** What prod runs before this update (absent on its first deploy): the comment compares SBOMs against it. */
    currentImageRef: ImageRef.optional(),
  }),
  z.object({
    allowed: z.literal(false),
    fromStack: z.string(),
    reasons: z.array(PromotionReason).min(1),
    /** Staging's `imageRef`, when it is a valid one: what the promotion would have run. */
    imageRef: ImageRef.optional(),
    currentImageRef: ImageRef.optional(),
  }),
]);
export type PromotionVerdict = z.infer<typeof PromotionVerdict>;

/** The verdict as the one line the gate logs. */
export function formatVerdict(verdict: PromotionVerdict): string {
  return formatLogLine(VERDICT_PREFIX, PromotionVerdict, verdict);
}

/**
 * The verdict in a list of diagnostic messages (any severity), or undefined when none holds one.
 * A line that starts with the prefix but does not hold a valid verdict is an error: the writer and
 * this reader disagree, which a round-trip test must catch.
 */
export function readVerdict(messages: readonly string[]): PromotionVerdict | undefined {
  return readLogLine(messages, VERDICT_PREFIX, PromotionVerdict);
}

/** A reason as a problem of the shared refusal format: where (the output), what, and the fix. */
function asProblem(reason: Pick<PromotionReason, "output" | "problem" | "fix">): Problem {
  return { path: reason.output.split("."), message: reason.problem, fix: reason.fix };
}

/** Reasons as readable lines, in the format every refusal of the program uses. */
export function formatReasons(reasons: readonly Pick<PromotionReason, "output" | "problem" | "fix">[]): string {
  return formatProblemList(reasons.map(asProblem));
}

/** The message a refused promotion stops the update with: every reason and its fix. */
export function refusalMessage(verdict: Extract<PromotionVerdict, { allowed: false }>, override: boolean): string {
  const text = formatRefusal(`prod promotion from ${verdict.fromStack} refused`, "reason", "no prod resource was touched", verdict.reasons.map(asProblem));
  const blocking = verdict.reasons.filter((r) => !r.overridable);
  if (!override || blocking.length === 0) return text;
  return `${text}\npromotion.override cannot lift: ${blocking.map((r) => r.output).join(", ")} (prod would have no trustworthy image to run).`;
}
