/**
 * What `npm run rotate` prints about the preview that follows a rotation: which resources change
 * and which of their properties, by name only, containers first. Reads the document through
 * ./document only.
 */
import { type ChangeKind, KIND_RANK, diagnosticMessages, readPreviewDocument, resourceSteps } from "./document";

/** One changed resource. */
export interface ResourceChange {
  kind: ChangeKind;
  /** Pulumi type token, e.g. `docker:index/container:Container`. */
  type: string;
  /** Resource name (last part of the URN). */
  name: string;
  urn: string;
  /** Names of changed properties, sorted; never values. */
  keys: string[];
}

/** The parts of a preview the rotation reports. */
export interface PreviewSummary {
  changes: ResourceChange[];
  /** Unchanged resources. */
  same: number;
  /** Messages of error diagnostics (the preview failed when there are any). */
  errors: string[];
}

/** Summarizes a parsed preview document; throws when it is not one. */
export function summarizePreview(raw: unknown): PreviewSummary {
  const doc = readPreviewDocument(raw);
  const changes: ResourceChange[] = [];
  let same = 0;
  for (const r of resourceSteps(doc)) {
    // The stack itself is not something the rotation changes.
    if (r.type === "pulumi:pulumi:Stack") continue;
    if (r.kind === "same") {
      same += 1;
      continue;
    }
    const keys = [...new Set([...r.diffReasons, ...r.replaceReasons, ...r.detailedDiff])].sort();
    changes.push({ kind: r.kind, type: r.type, name: r.name, urn: r.urn, keys });
  }
  changes.sort((a, b) => KIND_RANK[a.kind] - KIND_RANK[b.kind] || a.type.localeCompare(b.type) || a.name.localeCompare(b.name));
  return { changes, same, errors: diagnosticMessages(doc, "error") };
}

const CONTAINER_TYPE = "docker:index/container:Container";

/** Human-readable lines: containers first, then every other change, then the counts. */
export function formatPreview(summary: PreviewSummary, stack: string): string[] {
  const lines: string[] = [];
  const containers = summary.changes.filter((c) => c.type === CONTAINER_TYPE);
  const others = summary.changes.filter((c) => c.type !== CONTAINER_TYPE);
  const describe = (c: ResourceChange) =>
    `  ${c.kind.padEnd(8)}${c.name} (${c.type})${c.keys.length > 0 ? `  changed: ${c.keys.join(", ")}` : ""}`;
  if (containers.length === 0) {
    lines.push(`No container of stack ${stack} changes.`);
  } else {
    lines.push(`Containers of stack ${stack} that change on the next \`pulumi up\`:`);
    for (const c of containers) lines.push(describe(c));
  }
  if (others.length > 0) {
    lines.push("Other changes:");
    for (const c of others) lines.push(describe(c));
  }
  const count = (k: ChangeKind) => summary.changes.filter((c) => c.kind === k).length;
  lines.push(
    `Summary: ${count("replace")} to replace, ${count("update")} to update, ${count("create")} to create, ` +
      `${count("delete")} to delete, ${summary.same} unchanged.`,
  );
  return lines;
}
