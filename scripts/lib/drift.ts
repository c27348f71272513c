/**
 * What one drift check found: `pulumi preview --refresh --expect-no-changes --json` read back
 * (through the one preview reader, ./preview/stackSummary), the record the stack keeps of its last
 * check (a stack tag, so `npm run status` sees a check made anywhere, CI included), and the text of
 * the GitHub issue that reports it. Pure: no I/O. Never reads a property value: names only.
 */
import { z } from "zod";
import { redact } from "../../components/redact";
import { type Change, type StackPreview, summarize } from "./preview/stackSummary";

/** `none`: the stack is as Pulumi recorded it; `drift`: something differs; `unknown`: the check failed. */
export type DriftStatus = "none" | "drift" | "unknown";

/** The outcome of one drift check of one stack. */
export interface DriftResult {
  stack: string;
  status: DriftStatus;
  /** ISO-8601, UTC. */
  checkedAt: string;
  /** What would change to bring the stack back to what the program declares; names only. */
  changes: Change[];
  /** Why the check could not decide (status `unknown`), redacted. */
  errors: string[];
}

/**
 * The engine's own line for `--expect-no-changes` when something would change (since 3.2xx with the
 * operation's name, "for preview", and exit code 7); it is the finding, not an error.
 */
const EXPECTED_NO_CHANGES = /no changes were expected (for \w+ )?but changes were proposed/i;

/** Reads a drift check from what `pulumi preview --refresh --expect-no-changes --json` printed. */
export function readDriftCheck(preview: StackPreview, checkedAt: Date, secrets: readonly string[] = []): DriftResult {
  // The exit code is judged here, not by the summary: a non-zero one is what --expect-no-changes does on drift.
  const summary = summarize({ ...preview, exitCode: 0 });
  const changes = [...summary.destructive, ...summary.others];
  const errors = summary.errors.filter((e) => !EXPECTED_NO_CHANGES.test(e)).map((e) => redact(e, secrets));
  const base = { stack: preview.stack, checkedAt: checkedAt.toISOString(), changes };
  // Only a preview that ran to its end says anything: an error before it (the program refused, the
  // server did not answer) leaves the stack's state unknown, whatever steps it printed so far.
  if (errors.length > 0) return { ...base, status: "unknown", errors };
  if (changes.length > 0) return { ...base, status: "drift", errors: [] };
  if ((preview.exitCode ?? 0) !== 0) {
    // No change in the document, yet a failure: whatever the log says, nothing was decided.
    const log = preview.log?.trim();
    const tail = log ? log.split("\n").slice(-10).join("\n") : "";
    return { ...base, status: "unknown", errors: [redact(tail || `\`pulumi preview\` exited with code ${preview.exitCode}`, secrets)] };
  }
  return { ...base, status: "none", errors: [] };
}

/** One line per change, e.g. `replace pulumi-nodejs:dynamic:Resource backend-delivery-prod-release (image)`. */
export function changeLines(result: DriftResult): string[] {
  return result.changes.map((c) => `${c.op} ${c.type} ${c.name}${c.keys.length > 0 ? ` (${c.keys.join(", ")})` : ""}`);
}

/** The stack tag that records the last check. */
export const DRIFT_TAG = "backend-delivery:drift";

/** The record kept in {@link DRIFT_TAG}: small, names and counts only. */
export const DriftRecord = z.object({
  status: z.enum(["none", "drift", "unknown"]),
  checkedAt: z.iso.datetime(),
  changes: z.int().min(0),
});
export type DriftRecord = z.infer<typeof DriftRecord>;

/** The tag value for a result. */
export function driftRecord(result: DriftResult): string {
  return JSON.stringify({ status: result.status, checkedAt: result.checkedAt, changes: result.changes.length } satisfies DriftRecord);
}

/** Reads a tag value back; undefined for a missing or foreign one. */
export function readDriftRecord(value: string | undefined): DriftRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const parsed = DriftRecord.safeParse(JSON.parse(value));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The hidden marker that makes an issue the one drift issue of `stack`. */
export function driftMarker(stack: string): string {
  return `<!-- backend-delivery:drift stack=${stack} -->`;
}

/** The issue's title for `stack`. */
export function driftTitle(stack: string): string {
  return `Drift: stack ${stack} differs from its Pulumi state`;
}

/** Inline code that survives backticks inside. */
function code(text: string): string {
  const run = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(run + 1);
  return run > 0 ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}

/** Where the check ran, for the issue's text. */
export interface DriftContext {
  /** Link to the workflow run. */
  runUrl?: string;
  /** The commit of the program that was checked. */
  commit?: string;
}

/**
 * The issue body for a drifted stack: marker first (that is how the one issue is found again),
 * then what differs and how to resolve it, redacted as a whole.
 */
export function driftIssueBody(result: DriftResult, context: DriftContext = {}, secrets: readonly string[] = []): string {
  const shown = result.changes.slice(0, 50);
  const lines = [
    driftMarker(result.stack),
    `\`pulumi preview --refresh --expect-no-changes --stack ${result.stack}\` found ${result.changes.length} ` +
      `${result.changes.length === 1 ? "resource" : "resources"} that differ from what the program declares ` +
      `(checked ${result.checkedAt}${context.commit ? ` at commit ${code(context.commit)}` : ""}${context.runUrl ? `, [workflow run](${context.runUrl})` : ""}):`,
    "",
    ...shown.map((c) => `- **${c.op}** ${code(c.type)} ${code(c.name)}${c.keys.length > 0 ? ` (${c.keys.map(code).join(", ")})` : ""}`),
    ...(result.changes.length > shown.length ? [`- … and ${result.changes.length - shown.length} more`] : []),
    "",
    "Something changed outside `pulumi up` (a container removed or changed by hand, a server restored from a backup), " +
      "or a change to the program or its config was merged but not deployed (for prod: a promotion that waits for its reviewer).",
    "",
    `- To put the stack back as declared: \`pulumi up --stack ${result.stack}\` (or \`npm run up -- ${result.stack}\`).`,
    `- To accept a change made by hand into the state: \`pulumi refresh --stack ${result.stack}\`, then change the program to match.`,
    `- To check again: \`npm run drift -- ${result.stack}\`.`,
    "",
    "This issue is edited by every scheduled check while the drift lasts and closed by the first check that finds none.",
  ];
  return redact(`${lines.join("\n")}\n`, secrets);
}

/** The comment that closes the issue once a check finds no drift. */
export function driftResolvedComment(result: DriftResult, context: DriftContext = {}): string {
  return `No drift any more: \`pulumi preview --refresh --expect-no-changes --stack ${result.stack}\` found nothing to change (checked ${result.checkedAt}${context.runUrl ? `, [workflow run](${context.runUrl})` : ""}). Closing.\n`;
}
