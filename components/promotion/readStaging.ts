/**
 * Reads what the staging stack exported against the contract (contract.ts), with one `safeParse`
 * whose issues each become a refusal reason naming the output at fault. Outputs that are missing or
 * were exported as secret are reasons of their own and never reach the parse. Pure: no resources.
 */
import type { z } from "zod";
import { StagingContract } from "../contract";
import type { PromotionReason, ReasonCode } from "./reasons";

/**
 * One stack output as the engine reads it: `value` for a plain output, `secretValue` for a secret
 * one, neither when the output does not exist.
 */
export interface OutputDetails {
  readonly value?: unknown;
  readonly secretValue?: unknown;
}

/** The staging stack's outputs, by name, as they were read. */
export type StagingOutputs = Readonly<Partial<Record<string, OutputDetails>>>;

/** The staging outputs the decision reads; `url` is informative only and not required. */
export const REQUIRED_OUTPUTS = ["environment", "imageRef", "imageDigest", "readiness"] as const;

/**
 * Every output (and output field) a reason can name, in the order reasons are listed: the order of
 * the outputs, then of the readiness record's fields, then prod's own certificate.
 */
export const OUTPUT_ORDER = [
  "promotion.fromStack",
  "environment",
  "imageRef",
  "imageDigest",
  "readiness",
  "readiness.ready",
  "readiness.url",
  "readiness.version",
  "readiness.imageDigest",
  "readiness.checkedAt",
  "readiness.hardening",
  "readiness.hardening.user",
  "readiness.hardening.readOnlyRootFilesystem",
  "readiness.hardening.capabilitiesDropped",
  "readiness.hardening.noNewPrivileges",
  // Prod's own certificate: the chain it is given, or the one it serves.
  "proxy.tls.certificate",
  "tls.notAfter",
  // Not outputs of staging but what the registry holds for its image (staging's `supplyChain` records it).
  "supplyChain.signature",
  "supplyChain.sbom",
] as const;
export type OutputPath = (typeof OUTPUT_ORDER)[number];

/** What staging's outputs say: the plain values, and which of them keep the contract. */
export interface StagingRead {
  /** The plain values of the required outputs that are present. */
  readonly values: Readonly<Record<string, unknown>>;
  /** Reasons the outputs themselves give: missing, secret, or breaking the contract. */
  readonly reasons: PromotionReason[];
  /** Whether the output (or field) at `path` is present and keeps the contract. */
  valid(path: OutputPath): boolean;
}

/** Describes a value for a message without echoing more than a short, plain fragment. */
export function describe(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (typeof value === "string") {
    const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value;
    return `${JSON.stringify(shown)} (a string)`;
  }
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `${String(value)} (a ${typeof value})`;
}

/** The commands a reason's fix names: re-export from staging, check staging again, point prod elsewhere. */
export function fixes(fromStack: string) {
  return {
    upStaging: `run \`pulumi up --stack ${fromStack}\` so staging exports it`,
    recheck: `run \`pulumi up --stack ${fromStack}\` to check staging again`,
    pointAtStaging:
      "point `promotion.fromStack` at the staging stack: " +
      "`pulumi config set --path promotion.fromStack <organization>/<project>/<staging stack>`",
  };
}

const HARDENING_EXPECTED: Record<string, string> = {
  user: "a user string",
  readOnlyRootFilesystem: "a boolean",
  capabilitiesDropped: "a list of capability names",
  noNewPrivileges: "a boolean",
};

function valueAt(values: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  let node: unknown = values;
  for (const key of path) {
    if (node === null || typeof node !== "object" || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/** The reason a contract issue at `output` stands for, worded for the value found there. */
function contractReason(output: OutputPath, value: unknown, fromStack: string): PromotionReason {
  const { upStaging, recheck, pointAtStaging } = fixes(fromStack);
  const reason = (code: ReasonCode, problem: string, fix: string, overridable = true): PromotionReason => ({ code, output, problem, fix, overridable });
  switch (output) {
    case "environment":
      return reason("wrong-environment", `${fromStack} has environment ${describe(value)}, expected "staging"`, pointAtStaging, false);
    case "imageRef":
      return reason("invalid-output", `output \`imageRef\` is ${describe(value)}, expected a non-empty image reference`, upStaging, false);
    case "imageDigest":
      return reason("invalid-output", `output \`imageDigest\` is ${describe(value)}, expected sha256:<64 hex digits>`, upStaging, false);
    case "readiness":
      return reason("invalid-output", `output \`readiness\` is ${describe(value)}, expected an object`, recheck);
    case "readiness.ready":
      // `ready` must be exactly the boolean true: "true", 1 or null are not proof of anything.
      return reason("not-ready", `\`readiness.ready\` is ${describe(value)}, not the boolean true`, `fix staging until its readiness check passes, then ${recheck}`);
    case "readiness.imageDigest":
      return reason("invalid-output", `\`readiness.imageDigest\` is ${describe(value)}, expected sha256:<64 hex digits>`, recheck);
    case "readiness.checkedAt":
      return reason(
        "invalid-output",
        `\`readiness.checkedAt\` is ${describe(value)}, expected an ISO-8601 UTC time such as 2025-01-31T12:00:00Z`,
        recheck,
      );
    case "readiness.hardening":
      return reason("invalid-output", `\`readiness.hardening\` is ${describe(value)}, expected the hardening facts observed on staging's container`, recheck);
    default: {
      const field = output.split(".").pop() ?? output;
      const expected = output.startsWith("readiness.hardening.") ? (HARDENING_EXPECTED[field] ?? "a value") : "a string";
      return reason("invalid-output", `\`${output}\` is ${describe(value)}, expected ${expected}`, recheck);
    }
  }
}

/** The known output an issue path falls under: the longest one that is a prefix of it. */
function outputOf(path: readonly PropertyKey[]): OutputPath | undefined {
  for (let n = path.length; n > 0; n--) {
    const joined = path.slice(0, n).map(String).join(".");
    if ((OUTPUT_ORDER as readonly string[]).includes(joined)) return joined as OutputPath;
  }
  return undefined;
}

/** Reads staging's outputs against the contract; see {@link StagingRead}. */
export function readStaging(staging: StagingOutputs, fromStack: string): StagingRead {
  const { upStaging } = fixes(fromStack);
  const reasons: PromotionReason[] = [];
  const values: Record<string, unknown> = {};
  for (const name of REQUIRED_OUTPUTS) {
    const details = staging[name];
    if (details !== undefined && details.secretValue !== undefined) {
      // The contract says these outputs hold no secret. A secret one cannot be copied into prod's
      // plain outputs without unwrapping it, and its value must not be echoed here either.
      reasons.push({
        code: "secret-output",
        output: name,
        problem: `output \`${name}\` is marked secret on ${fromStack}, but it must be a plain value`,
        fix: `export \`${name}\` without secret inputs (or wrapped in \`pulumi.unsecret\`) in the staging program, then ${upStaging}`,
        overridable: false,
      });
    } else if (details?.value === undefined || details.value === null) {
      reasons.push({
        code: "missing-output",
        output: name,
        problem: `output \`${name}\` is missing on ${fromStack}`,
        fix: upStaging,
        overridable: name !== "imageRef" && name !== "imageDigest",
      });
    } else {
      values[name] = details.value;
    }
  }

  const parsed = StagingContract.partial().safeParse(values);
  const invalid = new Set<OutputPath>();
  for (const issue of parsed.success ? [] : (parsed.error as z.ZodError).issues) {
    const output = outputOf(issue.path);
    if (output === undefined || invalid.has(output)) continue;
    invalid.add(output);
    reasons.push(contractReason(output, valueAt(values, output.split(".")), fromStack));
  }
  const valid = (path: OutputPath): boolean => {
    if (valueAt(values, path.split(".")) === undefined) return false;
    return ![...invalid].some((bad) => path === bad || path.startsWith(`${bad}.`) || bad.startsWith(`${path}.`));
  };
  return { values, reasons, valid };
}
