/**
 * The pull-request comment in Markdown: per-stack counts, the replaced and deleted resources first,
 * the rest collapsed, prod's promotion verdict, errors of a failed preview. Everything is redacted
 * before it is split into parts that fit GitHub's limit. Pure: no I/O.
 */
import { refusalMessage, type PromotionReason } from "../../../components/promotion/reasons";
import type { TlsStatus } from "../../../components/proxy/tlsStatus";
import { redact } from "../../../components/redact";
import type { SupplyChainRecord } from "../../../components/contract";
import { shortFingerprint } from "../../../components/supplyChain/keys";
import { type DependencyChanges, renderDependencyChanges } from "./sbomDiff";
import { GITHUB_COMMENT_LIMIT, partHeader, splitMarkdown } from "./split";
import { type Change, type StackPreview, type StackSummary, type Verdict, summarize } from "./stackSummary";

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
  /** What the promotion changes in the image's dependencies (scripts/lib/preview/dependencies.ts). */
  dependencies?: DependencyChanges;
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

/** The image's signature and SBOM, as the gate verified them. */
function supplyChainLine(record: SupplyChainRecord): string {
  if ("reason" in record) return `**Signature: ${record.status === "unsigned" ? "UNSIGNED" : "NOT VERIFIED"}** — ${record.reason}`;
  return (
    `**Signature: ${record.status}** with key ${code(shortFingerprint(record.publicKeyFingerprint))} — signature ${code(record.signatureDigest)}, ` +
    `SBOM attestation ${code(record.attestationDigest)} (${record.sbom.packages} packages)`
  );
}

function renderVerdict(v: Verdict): string[] {
  if ("undecided" in v) return [`**Promotion: NOT DECIDED** — ${v.undecided}`];
  if (!v.allowed) {
    return [`**Promotion: BLOCKED** (${v.reasons.length} ${v.reasons.length === 1 ? "reason" : "reasons"})`, "", ...v.reasons.map(reasonLine)];
  }
  const lines = [
    `**Promotion: ALLOWED** — digest ${code(v.imageDigest)}, staging checked at ${code(v.checkedAt)}, from ${code(v.fromStack)}`,
  ];
  if (v.supplyChain !== undefined) lines.push("", supplyChainLine(v.supplyChain));
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

/** How long a certificate has left at the time of the status, in days, or that it has expired. */
function validity(notAfter: string, at: string): string {
  const days = (Date.parse(notAfter) - Date.parse(at)) / 86_400_000;
  return days <= 0 ? `**EXPIRED** ${(-days).toFixed(1)} days ago (${code(notAfter)})` : `valid ${days.toFixed(1)} more days (until ${code(notAfter)})`;
}

/** The stack's TLS: its mode and, where the proxy terminates TLS, the remaining validity of what it serves (and of what this change gives it). */
function tlsLine(t: TlsStatus): string {
  const head = `**TLS**: ${code(t.mode)}${t.domain === undefined ? "" : ` for ${code(t.domain)}`}`;
  if (t.mode === "off") return `${head} — plain HTTP at the proxy, on loopback`;
  if (t.mode === "upstream") return `${head} — ended by the load balancer in front; the proxy serves HTTP`;
  const served =
    t.served === undefined
      ? `no certificate served yet (${t.unobserved ?? "not observed"})`
      : `serves a certificate from ${code(t.served.issuer)}, ${validity(t.served.notAfter, t.at)}`;
  const given =
    t.configured === undefined || t.configured.fingerprint === t.served?.fingerprint
      ? ""
      : `; this change serves the chain in ${code("proxy.tls.certificate")}, ${validity(t.configured.notAfter, t.at)}`;
  return `${head} — ${served}${given}`;
}

function renderStack(s: StackSummary, dependencies?: DependencyChanges): string[] {
  const lines = [`### ${code(s.stack)}: ${s.succeeded ? "preview succeeded" : "preview FAILED"}`, ""];
  if (s.tls) lines.push(tlsLine(s.tls), "");
  if (s.verdict) lines.push(...renderVerdict(s.verdict), "");
  if (s.verdict && dependencies !== undefined) lines.push(...renderDependencyChanges(dependencies, code));
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
    lines.push(...renderStack(s, previews[i]?.promotion === true ? opts.dependencies : undefined));
    const log = previews[i]?.log?.trim();
    if (!s.succeeded && log) {
      lines.push("<details>", "<summary>Preview log (stderr)</summary>", "", ...block(log), "", "</details>", "");
    }
  });
  return lines.join("\n").trimEnd() + "\n";
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
