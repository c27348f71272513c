/**
 * Reads a `pulumi preview --json` document (Pulumi's preview digest: `steps[]` with `op`, `urn`,
 * `diffReasons`, `replaceReasons`, `detailedDiff`; `changeSummary`; `diagnostics[]`) and says which
 * resources change and which of their properties, by name only. Property values, old or new, are
 * never read: they may hold secrets.
 * Format: https://www.pulumi.com/docs/iac/cli/commands/pulumi_preview/ (`--json`).
 */

/** What happens to one resource. */
export type ChangeKind = "create" | "update" | "replace" | "delete";

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

interface RawStep {
  op?: unknown;
  urn?: unknown;
  diffReasons?: unknown;
  replaceReasons?: unknown;
  detailedDiff?: unknown;
  newState?: { type?: unknown };
  oldState?: { type?: unknown };
}

const OP_KIND: Record<string, ChangeKind | "same" | undefined> = {
  same: "same",
  read: "same",
  refresh: "same",
  create: "create",
  update: "update",
  replace: "replace",
  "create-replacement": "replace",
  "delete-replaced": "replace",
  "discard-replaced": "replace",
  delete: "delete",
  discard: "delete",
  import: "create",
  "import-replacement": "replace",
};

const KIND_RANK: Record<ChangeKind, number> = { replace: 0, delete: 1, update: 2, create: 3 };

/** `urn:pulumi:stack::project::a$b$type::name` -> type `type`, name `name`. */
export function parseUrn(urn: string): { type: string; name: string } {
  const parts = urn.split("::");
  const name = parts.length >= 4 ? parts.slice(3).join("::") : urn;
  const chain = parts[2] ?? "";
  const type = chain.split("$").pop() ?? chain;
  return { type, name };
}

function stringList(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];
}

/** Summarizes a parsed preview document; throws when it does not look like one. */
export function summarizePreview(doc: unknown): PreviewSummary {
  if (doc === null || typeof doc !== "object") throw new Error("the preview output is not a JSON object");
  const d = doc as { steps?: unknown; diagnostics?: unknown; changeSummary?: unknown };
  const steps: RawStep[] = Array.isArray(d.steps) ? (d.steps as RawStep[]) : [];
  const byUrn = new Map<string, ResourceChange>();
  let same = 0;
  for (const step of steps) {
    if (typeof step?.urn !== "string" || typeof step.op !== "string") continue;
    const { type: urnType, name } = parseUrn(step.urn);
    if (urnType === "pulumi:pulumi:Stack") continue;
    const kind = OP_KIND[step.op] ?? "update";
    if (kind === "same") {
      same += 1;
      continue;
    }
    const type =
      typeof step.newState?.type === "string"
        ? step.newState.type
        : typeof step.oldState?.type === "string"
          ? step.oldState.type
          : urnType;
    const keys = new Set<string>([
      ...stringList(step.diffReasons),
      ...stringList(step.replaceReasons),
      ...(step.detailedDiff !== null && typeof step.detailedDiff === "object" ? Object.keys(step.detailedDiff) : []),
    ]);
    const prior = byUrn.get(step.urn);
    if (prior) {
      for (const k of prior.keys) keys.add(k);
      // A replacement shows up as several steps; the strongest kind wins.
      prior.kind = KIND_RANK[kind] < KIND_RANK[prior.kind] ? kind : prior.kind;
      prior.keys = [...keys].sort();
    } else {
      byUrn.set(step.urn, { kind, type, name, urn: step.urn, keys: [...keys].sort() });
    }
  }
  const errors = (Array.isArray(d.diagnostics) ? d.diagnostics : [])
    .filter((x: unknown): x is { severity: string; message: string } => {
      const o = x as { severity?: unknown; message?: unknown } | null;
      return o !== null && typeof o === "object" && o.severity === "error" && typeof o.message === "string";
    })
    .map((x) => x.message.trim());
  const changes = [...byUrn.values()].sort(
    (a, b) => KIND_RANK[a.kind] - KIND_RANK[b.kind] || a.type.localeCompare(b.type) || a.name.localeCompare(b.name),
  );
  return { changes, same, errors };
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
