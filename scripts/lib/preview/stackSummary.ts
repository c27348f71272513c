/**
 * What the pull-request comment says about one stack's preview: whether it succeeded, the counts
 * per operation, the changed resources (replaced and deleted first), diagnostics, what it serves
 * over TLS, and for the promoted stack the gate's verdict. Reads the document through ./document only. Pure: no I/O.
 */
import { readVerdict, type PromotionVerdict } from "../../../components/promotion/reasons";
import { readTlsStatus, type TlsStatus } from "../../../components/proxy/tlsStatus";
import { type ChangeKind, type PreviewDocument, type StepKind, diagnosticMessages, parsePreviewDocument, resourceSteps } from "./document";

/** One stack's preview as the workflow captured it. */
export interface StackPreview {
  /** Stack name as shown, e.g. `staging`. */
  stack: string;
  /** The raw stdout of `pulumi preview --json` (may be empty when the CLI failed early). */
  json: string;
  /** Exit code of `pulumi preview`, when known. */
  exitCode?: number;
  /** Its stderr, shown (redacted) when the preview failed. */
  log?: string;
  /** Whether this stack is promoted through the gate: its comment carries the verdict. */
  promotion?: boolean;
}

/** The operations the comment counts, in the order of its table. */
export const COUNTED = ["create", "update", "replace", "delete", "same"] as const satisfies readonly StepKind[];

/** One changed resource as the comment lists it. */
export interface Change {
  op: ChangeKind;
  type: string;
  name: string;
  /** Why it is replaced (`replaceReasons`), or which properties change; names only, sorted. */
  keys: string[];
}

/** What one preview says, read from its document. */
export interface StackSummary {
  stack: string;
  succeeded: boolean;
  counts: Record<(typeof COUNTED)[number], number>;
  /** Replaced or deleted: the changes a reviewer must see first. */
  destructive: Change[];
  others: Change[];
  warnings: string[];
  errors: string[];
  verdict?: Verdict;
  /** What the stack serves over TLS, from the program's `tls status` line; absent when the preview ended before it. */
  tls?: TlsStatus;
}

/** The gate's verdict as the comment shows it: the gate's own, or why the gate never decided. */
export type Verdict = PromotionVerdict | { allowed: false; undecided: string };

/**
 * The gate's verdict in prod's preview: the verdict line the gate logs (components/promotion/reasons.ts),
 * or, when the preview failed before the gate decided, the first error.
 */
export function promotionVerdict(doc: PreviewDocument | undefined, errors: readonly string[]): Verdict {
  const verdict = readVerdict(diagnosticMessages(doc));
  if (verdict !== undefined) return verdict;
  const first = errors.find((m) => m !== "");
  return { allowed: false, undecided: `the prod preview failed before the gate decided${first ? `: ${first}` : ""}` };
}

/** Summarizes one stack's preview; a missing or unreadable document counts as a failure. */
export function summarize(preview: StackPreview): StackSummary {
  let doc: PreviewDocument | undefined;
  let readError: string | undefined;
  try {
    doc = parsePreviewDocument(preview.json);
  } catch (e) {
    readError = (e as Error).message;
  }
  const errors = diagnosticMessages(doc, "error");
  if (readError !== undefined) errors.unshift(readError);
  const warnings = diagnosticMessages(doc, "warning");
  const succeeded = readError === undefined && errors.length === 0 && (preview.exitCode ?? 0) === 0;
  if (!succeeded && errors.length === 0) {
    errors.push(`\`pulumi preview\` exited with code ${preview.exitCode}`);
  }

  const changes: Change[] = [];
  for (const r of doc === undefined ? [] : resourceSteps(doc)) {
    // Reads (stack references, data sources) and refreshes change nothing.
    if (r.kind === "same") continue;
    const keys = r.kind === "replace" ? r.replaceReasons : r.diffReasons.length > 0 ? r.diffReasons : r.detailedDiff;
    changes.push({ op: r.kind, type: r.type, name: r.name, keys });
  }
  const counts = Object.fromEntries(COUNTED.map((op) => [op, 0])) as StackSummary["counts"];
  if (doc?.changeSummary) {
    for (const op of COUNTED) counts[op] = doc.changeSummary[op] ?? 0;
  } else {
    for (const c of changes) counts[c.op]++;
  }
  const isDestructive = (c: Change) => c.op === "replace" || c.op === "delete";
  const tls = readTlsStatus(diagnosticMessages(doc));
  return {
    stack: preview.stack,
    succeeded,
    counts,
    destructive: changes.filter(isDestructive),
    others: changes.filter((c) => !isDestructive(c)),
    warnings,
    errors,
    ...(preview.promotion ? { verdict: promotionVerdict(doc, errors) } : {}),
    ...(tls === undefined ? {} : { tls }),
  };
}
