/**
 * Turns `pulumi preview --json` documents into the pull-request comment: per-stack counts, the
 * replaced and deleted resources first, the rest collapsed, prod's promotion verdict, errors of a
 * failed preview. Everything is redacted before it is split into parts that fit GitHub's limit.
 * Pure: no I/O. The document format is Pulumi's `PreviewDigest`
 * (https://github.com/pulumi/pulumi/blob/master/sdk/go/common/display/json.go).
 */
import { z } from "zod";
import { readVerdict, refusalMessage, type PromotionVerdict, type PromotionReason } from "../../components/promotion/reasons";
import { redact } from "../../components/redact";

/** First line of every part: how the poster finds its own comments again. */
export const MARKER = "<!-- backend-delivery:preview -->";
/** GitHub's limit on a comment body. */
export const GITHUB_COMMENT_LIMIT = 65_536;

const ResourceState = z.looseObject({
  type: z.string().optional(),
  outputs: z.record(z.string(), z.unknown()).optional(),
  inputs: z.record(z.string(), z.unknown()).optional(),
});

/** The parts of Pulumi's preview digest this module reads; unknown fields are allowed. */
export const PreviewDocument = z.looseObject({
  steps: z
    .array(
      z.looseObject({
        op: z.string(),
        urn: z.string(),
        oldState: ResourceState.nullish(),
        newState: ResourceState.nullish(),
        diffReasons: z.array(z.string()).nullish(),
        replaceReasons: z.array(z.string()).nullish(),
        detailedDiff: z.record(z.string(), z.looseObject({ kind: z.string() })).nullish(),
      }),
    )
    .nullish(),
  diagnostics: z
    .array(z.looseObject({ urn: z.string().optional(), message: z.string().optional(), severity: z.string().optional() }))
    .nullish(),
  changeSummary: z.record(z.string(), z.number()).nullish(),
});
export type PreviewDocument = z.infer<typeof PreviewDocument>;

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

/** Options of {@link renderPreviewComment}. */
export interface RenderOptions {
  /** Every secret value to redact (stack secrets, current and previous). */
  secrets?: readonly string[];
  /** Largest body of one comment, in UTF-16 units (never more than code points). */
  maxChars?: number;
  /** The commit previewed, shown in the heading. */
  commit?: string;
  /** Link to the workflow run. */
  runUrl?: string;
}

const COUNTED = ["create", "update", "replace", "delete", "same"] as const;

interface Change {
  op: string;
  type: string;
  name: string;
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
}

/** The gate's verdict as the comment shows it: the gate's own, or why the gate never decided. */
export type Verdict = PromotionVerdict | { allowed: false; undecided: string };

function parseUrn(urn: string): { type: string; name: string } {
  // urn:pulumi:<stack>::<project>::<parent$...$type>::<name>
  const parts = urn.split("::");
  const name = parts.slice(3).join("::");
  const type = (parts[2] ?? "").split("$").pop() ?? "";
  return { type, name };
}

/** Parses and checks one document; the error says what is wrong with it. */
export function parsePreviewDocument(json: string): PreviewDocument {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new Error(
      json.trim() === ""
        ? "`pulumi preview --json` wrote nothing to stdout"
        : "`pulumi preview --json` output is not JSON (was stderr mixed into it?)",
    );
  }
  const result = PreviewDocument.safeParse(raw);
  if (!result.success) {
    throw new Error(`not a \`pulumi preview --json\` document:\n${z.prettifyError(result.error)}`);
  }
  return result.data;
}

function stripSeverity(message: string): string {
  return message.replace(/^\s*(error|warning):\s*/, "").trimEnd();
}

/**
 * The gate's verdict in prod's preview: the verdict line the gate logs (components/promotionVerdict.ts),
 * or, when the preview failed before the gate decided, the first error.
 */
export function promotionVerdict(doc: PreviewDocument | undefined, errors: readonly string[]): Verdict {
  const verdict = readVerdict((doc?.diagnostics ?? []).map((d) => d.message ?? ""));
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
  const diagnostics = doc?.diagnostics ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error").map((d) => stripSeverity(d.message ?? ""));
  if (readError !== undefined) errors.unshift(readError);
  const warnings = diagnostics.filter((d) => d.severity === "warning").map((d) => stripSeverity(d.message ?? ""));
  const succeeded = readError === undefined && errors.length === 0 && (preview.exitCode ?? 0) === 0;
  if (!succeeded && errors.length === 0) {
    errors.push(`\`pulumi preview\` exited with code ${preview.exitCode}`);
  }

  const changes: Change[] = (doc?.steps ?? [])
    // Reads (stack references, data sources) change nothing.
    .filter((s) => s.op !== "same" && s.op !== "read")
    .map((s) => {
      const { type, name } = parseUrn(s.urn);
      const keys = s.op === "replace" ? (s.replaceReasons ?? []) : (s.diffReasons ?? Object.keys(s.detailedDiff ?? {}));
      return { op: s.op, type, name, keys: [...keys].sort() };
    });
  const counts = Object.fromEntries(COUNTED.map((op) => [op, 0])) as StackSummary["counts"];
  if (doc?.changeSummary) {
    for (const op of COUNTED) counts[op] = doc.changeSummary[op] ?? 0;
  } else {
    for (const c of changes) if ((COUNTED as readonly string[]).includes(c.op)) counts[c.op as keyof typeof counts]++;
  }
  const isDestructive = (c: Change) => c.op === "replace" || c.op === "delete";
  return {
    stack: preview.stack,
    succeeded,
    counts,
    destructive: changes.filter(isDestructive),
    others: changes.filter((c) => !isDestructive(c)),
    warnings,
    errors,
    ...(preview.promotion ? { verdict: promotionVerdict(doc, errors) } : {}),
  };
}

/** Inline code that survives any backticks inside. */
function code(text: string): string {
  const run = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(run + 1);
  return run > 0 ? `${fence} ${text} ${fence}` : `${fence}${text}${fence}`;
}

/** A fenced block that no content can close early. */
function block(text: string): string[] {
  const run = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(run + 1);
  return [`${fence}text`, ...text.split("\n"), fence];
}

function changeLine(c: Change): string {
  const why = c.keys.length > 0 ? ` (${c.op === "replace" ? "replaced because of" : "changed"}: ${c.keys.map(code).join(", ")})` : "";
  return `- **${c.op}** ${code(c.type)} ${code(c.name)}${why}`;
}

function reasonLine(r: PromotionReason): string {
  return `- ${code(r.output)}: ${r.problem}. — fix: ${r.fix}`;
}

function renderVerdict(v: Verdict): string[] {
  if ("undecided" in v) return [`**Promotion: NOT DECIDED** — ${v.undecided}`];
  if (!v.allowed) {
    return [`**Promotion: BLOCKED** (${v.reasons.length} ${v.reasons.length === 1 ? "reason" : "reasons"})`, "", ...v.reasons.map(reasonLine)];
  }
  const lines = [
    `**Promotion: ALLOWED** — digest ${code(v.imageDigest)}, staging checked at ${code(v.checkedAt)}, from ${code(v.fromStack)}`,
  ];
  if (v.override !== undefined) {
    lines.push(
      "",
      `**Override** approved by ${code(v.override.approvedBy)}: ${v.override.reason}. It lifts:`,
      "",
      ...(v.overridden ?? []).map(reasonLine),
    );
  }
  return lines;
}

function renderStack(s: StackSummary): string[] {
  const lines = [`### ${code(s.stack)}: ${s.succeeded ? "preview succeeded" : "preview FAILED"}`, ""];
  if (s.verdict) lines.push(...renderVerdict(s.verdict), "");
  // The gate's refusal is already listed as the verdict's reasons.
  const refusal = s.verdict && !s.verdict.allowed && "reasons" in s.verdict ? refusalMessage(s.verdict, false) : undefined;
  const errors = refusal === undefined ? s.errors : s.errors.filter((e) => !e.startsWith(refusal));
  if (errors.length > 0) {
    lines.push("**Errors**", "");
    for (const e of errors) lines.push(...block(e), "");
  }
  if (s.destructive.length > 0) {
    lines.push(`**Replaced or deleted (${s.destructive.length})**`, "", ...s.destructive.map(changeLine), "");
  }
  if (s.others.length > 0) {
    lines.push(`<details>`, `<summary>Other changes (${s.others.length})</summary>`, "", ...s.others.map(changeLine), "", `</details>`, "");
  }
  if (s.succeeded && s.destructive.length + s.others.length === 0) lines.push("No changes.", "");
  if (s.warnings.length > 0) {
    lines.push(`<details>`, `<summary>Warnings (${s.warnings.length})</summary>`, "");
    for (const w of s.warnings) lines.push(...block(w), "");
    lines.push(`</details>`, "");
  }
  return lines;
}

/** The comment body before redaction and splitting (no marker, no heading). */
export function renderBody(summaries: readonly StackSummary[], previews: readonly StackPreview[], opts: RenderOptions = {}): string {
  const lines: string[] = [];
  const meta = [opts.commit ? `commit ${code(opts.commit)}` : undefined, opts.runUrl ? `[workflow run](${opts.runUrl})` : undefined];
  if (meta.some((m) => m !== undefined)) lines.push(meta.filter((m) => m !== undefined).join(" · "), "");
  lines.push("| Stack | Preview | Create | Update | Replace | Delete | Same |", "|---|---|--:|--:|--:|--:|--:|");
  for (const s of summaries) {
    const c = s.counts;
    lines.push(`| ${code(s.stack)} | ${s.succeeded ? "succeeded" : "**failed**"} | ${c.create} | ${c.update} | ${c.replace} | ${c.delete} | ${c.same} |`);
  }
  lines.push("");
  summaries.forEach((s, i) => {
    lines.push(...renderStack(s));
    const log = previews[i]?.log?.trim();
    if (!s.succeeded && log) {
      lines.push("<details>", "<summary>Preview log (stderr)</summary>", "", ...block(log), "", "</details>", "");
    }
  });
  return lines.join("\n").trimEnd() + "\n";
}

/** The hidden and visible header of part `index` of `total`. */
export function partHeader(index: number, total: number): string {
  const title = total > 1 ? `## Pulumi preview (part ${index}/${total})` : "## Pulumi preview";
  return `${MARKER}\n<!-- backend-delivery:preview part ${index}/${total} -->\n${title}\n\n`;
}

/** Reads the part number a comment body carries (1 for a body with the marker but no part line). */
export function partOf(body: string): number | undefined {
  if (!body.startsWith(MARKER)) return undefined;
  const m = /<!-- backend-delivery:preview part (\d+)\/\d+ -->/.exec(body);
  return m ? Number(m[1]) : 1;
}

/**
 * Splits Markdown at line boundaries into chunks of at most `budget` characters. A chunk that ends
 * inside a code fence or `<details>` closes it, and the next chunk reopens it, so each part renders
 * on its own. A line longer than the budget is cut.
 */
export function splitMarkdown(text: string, budget: number): string[] {
  const chunks: string[] = [];
  let current: string[] = [];
  let size = 0;
  let fence: string | undefined;
  let details = 0;
  const reopen = () => {
    const lines: string[] = [];
    for (let i = 0; i < details; i++) lines.push("<details>", "<summary>(continued)</summary>", "");
    if (fence) lines.push(`${fence}text`);
    return lines;
  };
  // Size of a chunk that holds only what reopens the previous one's blocks.
  let baseSize = 0;
  const flush = () => {
    const closing = [...(fence ? [fence] : []), ...Array<string>(details).fill("</details>")];
    chunks.push([...current, ...closing].join("\n") + "\n");
    current = reopen();
    size = current.reduce((n, l) => n + l.length + 1, 0);
    baseSize = size;
  };
  // Leaves room for the closers and reopeners of a cut inside nested blocks.
  const maxLine = budget >= 400 ? budget - 200 : Math.max(1, Math.floor(budget / 2));
  const lines = text.split("\n").flatMap((l) => {
    const pieces: string[] = [];
    for (let i = 0; i < l.length || i === 0; i += maxLine) pieces.push(l.slice(i, i + maxLine));
    return pieces;
  });
  for (const line of lines) {
    // State after this line, to reserve room for what would close it.
    const fenceMatch = /^(`{3,})/.exec(line);
    let nextFence = fence;
    let nextDetails = details;
    if (fence) {
      if (line === fence) nextFence = undefined;
    } else if (fenceMatch) {
      nextFence = fenceMatch[1];
    } else if (line === "<details>") nextDetails++;
    else if (line === "</details>") nextDetails = Math.max(0, nextDetails - 1);
    const closeAfter = (nextFence ? nextFence.length + 1 : 0) + nextDetails * "</details>\n".length;
    if (size + line.length + 1 + closeAfter > budget && size > baseSize) {
      flush();
    }
    current.push(line);
    size += line.length + 1;
    fence = nextFence;
    details = nextDetails;
  }
  if (current.some((l) => l.trim() !== "")) chunks.push(current.join("\n").trimEnd() + "\n");
  return chunks;
}

/**
 * The comment parts for these previews: rendered, redacted, then split so that every part
 * (header included) fits `maxChars`.
 */
export function renderPreviewComment(previews: readonly StackPreview[], opts: RenderOptions = {}): string[] {
  const summaries = previews.map(summarize);
  const body = redact(renderBody(summaries, previews, opts), opts.secrets ?? []);
  const maxChars = opts.maxChars ?? GITHUB_COMMENT_LIMIT;
  // Room for the largest header any part count could need.
  const budget = maxChars - partHeader(9999, 9999).length;
  if (budget < 400) throw new RangeError(`maxChars ${maxChars} leaves no room for a comment part`);
  const chunks = splitMarkdown(body, budget);
  return chunks.map((chunk, i) => partHeader(i + 1, chunks.length) + chunk);
}

const ConfigJson = z.record(
  z.string(),
  z.looseObject({ value: z.string().optional(), objectValue: z.unknown().optional(), secret: z.boolean().optional() }),
);

function leaves(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (typeof v === "number" || typeof v === "boolean") return [String(v)];
  if (Array.isArray(v)) return v.flatMap(leaves);
  if (v !== null && typeof v === "object") return Object.values(v).flatMap(leaves);
  return [];
}

/**
 * The secret values in the output of `pulumi config --show-secrets --json`: each secret key's
 * value and, for an object holding secrets, every leaf of it.
 */
export function secretsFromConfigJson(json: string, source: string): string[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new Error(`${source} is not JSON; write it with \`pulumi config --show-secrets --json --stack <stack>\``);
  }
  const parsed = ConfigJson.safeParse(raw);
  if (!parsed.success) {
    throw new Error(`${source} is not the output of \`pulumi config --show-secrets --json\`:\n${z.prettifyError(parsed.error)}`);
  }
  const values: string[] = [];
  const hidden: string[] = [];
  for (const [key, entry] of Object.entries(parsed.data)) {
    if (entry.secret !== true) continue;
    if (entry.value === undefined) hidden.push(key);
    else values.push(entry.value, ...leaves(entry.objectValue));
  }
  if (hidden.length > 0) {
    throw new Error(
      `${source} holds secret keys without their values (${hidden.join(", ")}); ` +
        "it must be written with --show-secrets, or those values could not be redacted",
    );
  }
  return values;
}
