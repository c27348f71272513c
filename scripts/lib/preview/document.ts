/**
 * The one reader of `pulumi preview --json` documents, Pulumi's preview digest
 * (https://github.com/pulumi/pulumi/blob/master/sdk/go/common/display/json.go): the schema, parsing
 * with errors that say what is wrong, which resource each step is about and what happens to it, and
 * the diagnostics by severity. The pull-request comment and `npm run rotate` read documents only
 * through this module. Property values, old or new, are never read: they may hold secrets.
 */
import { z } from "zod";

const ResourceState = z.looseObject({
  type: z.string().optional(),
  outputs: z.record(z.string(), z.unknown()).optional(),
  inputs: z.record(z.string(), z.unknown()).optional(),
});

/** The parts of Pulumi's preview digest this project reads; unknown fields are allowed. */
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

/** Checks an already parsed value; the error says what is wrong with it. */
export function readPreviewDocument(raw: unknown): PreviewDocument {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new Error("not a `pulumi preview --json` document: the preview output is not a JSON object");
  }
  const result = PreviewDocument.safeParse(raw);
  if (!result.success) {
    throw new Error(`not a \`pulumi preview --json\` document:\n${z.prettifyError(result.error)}`);
  }
  return result.data;
}

/** Parses and checks the text `pulumi preview --json` wrote; the error says what is wrong with it. */
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
  return readPreviewDocument(raw);
}

/** What a preview does to a resource that changes. */
export type ChangeKind = "create" | "update" | "replace" | "delete";
/** What a preview does to a resource: a change, or nothing. */
export type StepKind = ChangeKind | "same";

// Pulumi's step ops (https://www.pulumi.com/docs/iac/concepts/how-pulumi-works/#resource-operations):
// a replacement may show as its create-replacement and delete-replaced steps, reads and refreshes
// change nothing the program deploys. A Map, so an op such as "constructor" finds nothing.
const OP_KIND = new Map<string, StepKind>([
  ["same", "same"],
  ["read", "same"],
  ["refresh", "same"],
  ["create", "create"],
  ["update", "update"],
  ["replace", "replace"],
  ["create-replacement", "replace"],
  ["delete-replaced", "replace"],
  ["discard-replaced", "replace"],
  ["delete", "delete"],
  ["discard", "delete"],
  ["import", "create"],
  ["import-replacement", "replace"],
]);

/** The kind of one step op; an op this table does not know counts as an update, so it is shown. */
export function stepKind(op: string): StepKind {
  return OP_KIND.get(op) ?? "update";
}

/** How strongly each kind changes a resource, strongest first: several steps fold to the strongest. */
export const KIND_RANK: Readonly<Record<StepKind, number>> = { replace: 0, delete: 1, update: 2, create: 3, same: 4 };

/** `urn:pulumi:stack::project::a$b$type::name` -> type `type`, name `name` (a name may hold `::`). */
export function parseUrn(urn: string): { type: string; name: string } {
  const parts = urn.split("::");
  const name = parts.length >= 4 ? parts.slice(3).join("::") : urn;
  const chain = parts[2] ?? "";
  const type = chain.split("$").pop() ?? chain;
  return { type, name };
}

/** One resource the preview names, its steps folded into one. */
export interface ResourceStep {
  /** The strongest kind of its steps. */
  kind: StepKind;
  urn: string;
  /** Pulumi type token, e.g. `docker:index/container:Container`: the state's, else the URN's. */
  type: string;
  /** Resource name (the last part of the URN). */
  name: string;
  /** Top-level properties that differ (`diffReasons`), sorted. */
  diffReasons: string[];
  /** Properties that force the replacement (`replaceReasons`), sorted. */
  replaceReasons: string[];
  /** Property paths of `detailedDiff`, e.g. `envs[2]`, sorted. */
  detailedDiff: string[];
}

const union = (a: readonly string[], b: readonly string[] | null | undefined): string[] => [...new Set([...a, ...(b ?? [])])].sort();

/** Every resource the preview names, in the order of its first step. */
export function resourceSteps(doc: PreviewDocument): ResourceStep[] {
  const byUrn = new Map<string, ResourceStep>();
  for (const step of doc.steps ?? []) {
    const kind = stepKind(step.op);
    const detailed = Object.keys(step.detailedDiff ?? {});
    const prior = byUrn.get(step.urn);
    if (prior === undefined) {
      const type = step.newState?.type ?? step.oldState?.type ?? parseUrn(step.urn).type;
      byUrn.set(step.urn, {
        kind,
        urn: step.urn,
        type,
        name: parseUrn(step.urn).name,
        diffReasons: union([], step.diffReasons),
        replaceReasons: union([], step.replaceReasons),
        detailedDiff: union([], detailed),
      });
      continue;
    }
    if (KIND_RANK[kind] < KIND_RANK[prior.kind]) prior.kind = kind;
    prior.diffReasons = union(prior.diffReasons, step.diffReasons);
    prior.replaceReasons = union(prior.replaceReasons, step.replaceReasons);
    prior.detailedDiff = union(prior.detailedDiff, detailed);
  }
  return [...byUrn.values()];
}

/**
 * The messages of the diagnostics of one severity (`error`, `warning`, `info`; all when none is
 * given), without Pulumi's `error: ` or `warning: ` lead and the whitespace around them. A
 * diagnostic without a message reads as "", so an error still counts.
 */
export function diagnosticMessages(doc: PreviewDocument | undefined, severity?: string): string[] {
  return (doc?.diagnostics ?? [])
    .filter((d) => severity === undefined || d.severity === severity)
    .map((d) => (d.message ?? "").replace(/^\s*(error|warning):\s*/, "").trim());
}
