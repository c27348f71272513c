/**
 * The promotion gate's verdict as data: one line that the gate logs in `pulumi up` and `pulumi
 * preview`, and that the pull-request comment reads back from `pulumi preview --json`. The gate
 * writes it with {@link formatVerdict}; readers use {@link readVerdict}; nobody parses the gate's
 * prose. Pure module: no resources.
 */
import { z } from "zod";
import { Digest } from "./contract";

/** What starts the verdict line; everything after it is the verdict as JSON. */
export const VERDICT_PREFIX = "promotion verdict: ";

/** One reason against a promotion: the output at fault, what is wrong, the fix. */
export const VerdictReason = z.object({
  code: z.string(),
  output: z.string(),
  problem: z.string(),
  fix: z.string(),
  overridable: z.boolean(),
});
export type VerdictReason = z.infer<typeof VerdictReason>;

/** A break-glass approval, as recorded. */
export const VerdictOverride = z.object({ reason: z.string(), approvedBy: z.string() });

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
    override: VerdictOverride.optional(),
    /** What the override lifted. */
    overridden: z.array(VerdictReason).optional(),
  }),
  z.object({
    allowed: z.literal(false),
    fromStack: z.string(),
    reasons: z.array(VerdictReason).min(1),
  }),
]);
export type PromotionVerdict = z.infer<typeof PromotionVerdict>;

/** The verdict as the one line the gate logs. */
export function formatVerdict(verdict: PromotionVerdict): string {
  return `${VERDICT_PREFIX}${JSON.stringify(PromotionVerdict.parse(verdict))}`;
}

/**
 * The verdict in a list of diagnostic messages (any severity), or undefined when none holds one.
 * A line that starts with the prefix but does not hold a valid verdict is an error: the writer and
 * this reader disagree, which a round-trip test must catch.
 */
export function readVerdict(messages: readonly string[]): PromotionVerdict | undefined {
  for (const message of messages) {
    for (const line of message.split("\n")) {
      const at = line.indexOf(VERDICT_PREFIX);
      if (at === -1) continue;
      let raw: unknown;
      try {
        raw = JSON.parse(line.slice(at + VERDICT_PREFIX.length));
      } catch {
        throw new Error(`a "${VERDICT_PREFIX.trim()}" line is not JSON: ${line.slice(0, 120)}`);
      }
      const parsed = PromotionVerdict.safeParse(raw);
      if (!parsed.success) throw new Error(`a "${VERDICT_PREFIX.trim()}" line breaks the contract:\n${z.prettifyError(parsed.error)}`);
      return parsed.data;
    }
  }
  return undefined;
}

/** One reason as readable lines: the output, what is wrong, and the fix. */
export function formatReason(reason: Pick<VerdictReason, "output" | "problem" | "fix">): string {
  return `- ${reason.output}: ${reason.problem}.\n  fix: ${reason.fix}`;
}

/** The message a refused promotion stops the update with: every reason and its fix. */
export function refusalMessage(verdict: Extract<PromotionVerdict, { allowed: false }>, override: boolean): string {
  const count = verdict.reasons.length === 1 ? "1 reason" : `${verdict.reasons.length} reasons`;
  const lines = [
    `prod promotion from ${verdict.fromStack} refused (${count}); no prod resource was touched:`,
    ...verdict.reasons.map(formatReason),
  ];
  const blocking = verdict.reasons.filter((r) => !r.overridable);
  if (override && blocking.length > 0) {
    lines.push(
      `promotion.override cannot lift: ${blocking.map((r) => r.output).join(", ")} ` +
        "(prod would have no trustworthy image to run).",
    );
  }
  return lines.join("\n");
}
