/**
 * The prod promotion decision, as a pure function: given what the staging stack exported, may prod
 * take its image? No Pulumi resources here, so every rule is tested without mocks; the
 * `PromotionGate` component (promotionGate.ts) reads the staging stack and acts on the answer.
 *
 * Fail closed: anything missing, malformed, stale or doubtful is a reason to refuse, and every
 * reason names the output it is about and the command that fixes it.
 */
import { z } from "zod";
import { Digest, Environment, Hardening, Readiness, isRootUser } from "./contract";

/** The staging outputs the decision reads; `url` is informative only and not required. */
export const REQUIRED_OUTPUTS = ["environment", "imageRef", "imageDigest", "readiness"] as const;
export type RequiredOutput = (typeof REQUIRED_OUTPUTS)[number];

/**
 * One stack output as `StackReference.getOutputDetails` returns it: `value` for a plain output,
 * `secretValue` for a secret one, neither when the output does not exist.
 */
export interface OutputDetails {
  readonly value?: unknown;
  readonly secretValue?: unknown;
}

/** The staging stack's outputs, by name, in the shape `getOutputDetails` returns them. */
export type StagingOutputs = Readonly<Partial<Record<string, OutputDetails>>>;

/** The rules a promotion is held to; normally from the prod stack's `promotion` config. */
export interface PromotionPolicy {
  /** The stack promoted from, e.g. `organization/backend-delivery/staging`; used in fix commands. */
  readonly fromStack: string;
  /** How old staging's readiness check may be, in hours. */
  readonly maxAgeHours: number;
  /** Whether images go through a registry: then `imageRef` must be pinned by digest. */
  readonly registry: boolean;
  /** Clock skew tolerated for a `checkedAt` in the future, in minutes (default 5). */
  readonly clockSkewMinutes?: number;
}

/** Why a promotion is refused; stable codes so callers and tests can tell reasons apart. */
export type ReasonCode =
  | "stack-not-found"
  | "missing-output"
  | "secret-output"
  | "invalid-output"
  | "wrong-environment"
  | "not-ready"
  | "digest-mismatch"
  | "unpinned-ref"
  | "ref-digest-mismatch"
  | "checked-in-future"
  | "stale-readiness"
  | "root-user"
  | "writable-root"
  | "capabilities-kept"
  | "new-privileges-allowed";

/** One reason a promotion is refused. */
export interface PromotionReason {
  readonly code: ReasonCode;
  /** The output (or output field) at fault, e.g. `readiness.hardening.user`. */
  readonly output: string;
  /** What is wrong, in one sentence. */
  readonly problem: string;
  /** The command or change that fixes it. */
  readonly fix: string;
  /**
   * Whether a recorded break-glass override may lift it. Reasons that leave prod without a
   * trustworthy image to run (no image reference, no staging stack) can never be overridden.
   */
  readonly overridable: boolean;
}

/** The answer: allowed only when there is no reason against it. */
export interface PromotionDecision {
  readonly allowed: boolean;
  readonly reasons: readonly PromotionReason[];
}

const DEFAULT_CLOCK_SKEW_MINUTES = 5;
const PINNED_REF = /^[^\s@]+@(sha256:[0-9a-f]{64})$/;
const HOUR_MS = 3_600_000;

/** Describes a value for a message without echoing more than a short, plain fragment. */
function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") {
    const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value;
    return `${JSON.stringify(shown)} (a string)`;
  }
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `${String(value)} (a ${typeof value})`;
}

/**
 * Decides whether prod may promote staging's image. Pure: reads only its arguments, so the same
 * outputs, policy and clock always give the same answer (in `pulumi up` and `pulumi preview`).
 */
export function decidePromotion(
  staging: StagingOutputs,
  policy: PromotionPolicy,
  now: Date,
): PromotionDecision {
  checkPolicy(policy, now);
  const reasons: PromotionReason[] = [];
  const upStaging = `run \`pulumi up --stack ${policy.fromStack}\` so staging exports it`;
  const reason = (
    code: ReasonCode,
    output: string,
    problem: string,
    fix: string,
    overridable = true,
  ): void => {
    reasons.push({ code, output, problem, fix, overridable });
  };

  // Read each output separately so that one bad output does not hide the problems of another.
  const read = (name: RequiredOutput): { present: boolean; value: unknown } => {
    const details = staging[name];
    if (details !== undefined && details.secretValue !== undefined) {
      // The contract says these outputs hold no secret. A secret one cannot be copied into prod's
      // plain outputs without unwrapping it, and its value must not be echoed here either.
      reason(
        "secret-output",
        name,
        `output \`${name}\` is marked secret on ${policy.fromStack}, but it must be a plain value`,
        `export \`${name}\` without secret inputs (or wrapped in \`pulumi.unsecret\`) in the staging program, then ${upStaging}`,
        false,
      );
      return { present: false, value: undefined };
    }
    const value = details?.value;
    if (value === undefined || value === null) {
      reason(
        "missing-output",
        name,
        `output \`${name}\` is missing on ${policy.fromStack}`,
        upStaging,
        name !== "imageRef" && name !== "imageDigest",
      );
      return { present: false, value: undefined };
    }
    return { present: true, value };
  };

  const environment = read("environment");
  const imageRef = read("imageRef");
  const imageDigest = read("imageDigest");
  const readiness = read("readiness");

  if (environment.present) {
    const parsed = Environment.safeParse(environment.value);
    if (!parsed.success || parsed.data !== "staging") {
      reason(
        "wrong-environment",
        "environment",
        `${policy.fromStack} has environment ${describe(environment.value)}, expected "staging"`,
        "point `promotion.fromStack` at the staging stack: " +
          "`pulumi config set --path promotion.fromStack <organization>/<project>/<staging stack>`",
        false,
      );
    }
  }

  let ref: string | undefined;
  if (imageRef.present) {
    if (typeof imageRef.value === "string" && imageRef.value.trim() !== "") ref = imageRef.value;
    else {
      reason(
        "invalid-output",
        "imageRef",
        `output \`imageRef\` is ${describe(imageRef.value)}, expected a non-empty image reference`,
        upStaging,
        false,
      );
    }
  }

  let digest: string | undefined;
  if (imageDigest.present) {
    const parsed = Digest.safeParse(imageDigest.value);
    if (parsed.success) digest = parsed.data;
    else {
      reason(
        "invalid-output",
        "imageDigest",
        `output \`imageDigest\` is ${describe(imageDigest.value)}, expected sha256:<64 hex digits>`,
        upStaging,
        false,
      );
    }
  }

  if (ref !== undefined && digest !== undefined) checkReference(ref, digest, policy, reason);

  if (readiness.present) checkReadiness(readiness.value, digest, policy, now, reason);

  return { allowed: reasons.length === 0, reasons };
}

type AddReason = (
  code: ReasonCode,
  output: string,
  problem: string,
  fix: string,
  overridable?: boolean,
) => void;

function checkPolicy(policy: PromotionPolicy, now: Date): void {
  const problems: string[] = [];
  if (typeof policy.fromStack !== "string" || policy.fromStack.trim() === "") {
    problems.push("fromStack must name the staging stack");
  }
  if (!Number.isFinite(policy.maxAgeHours) || policy.maxAgeHours <= 0) {
    problems.push(`maxAgeHours must be a positive number of hours, got ${String(policy.maxAgeHours)}`);
  }
  const skew = policy.clockSkewMinutes ?? DEFAULT_CLOCK_SKEW_MINUTES;
  if (!Number.isFinite(skew) || skew < 0) {
    problems.push(`clockSkewMinutes must be zero or more, got ${String(skew)}`);
  }
  if (Number.isNaN(now.getTime())) problems.push("now must be a valid date");
  if (problems.length > 0) {
    throw new RangeError(
      `invalid promotion policy: ${problems.join("; ")} ` +
        "(set it with `pulumi config set --path promotion.maxAgeHours <hours>`)",
    );
  }
}

/** The reference prod will run must be the very bytes whose digest staging recorded. */
function checkReference(ref: string, digest: string, policy: PromotionPolicy, reason: AddReason): void {
  const upStaging = `run \`pulumi up --stack ${policy.fromStack}\``;
  if (policy.registry) {
    const pinned = PINNED_REF.exec(ref);
    if (pinned === null) {
      reason(
        "unpinned-ref",
        "imageRef",
        `output \`imageRef\` ${describe(ref)} is not pinned by digest (<repository>@sha256:<digest>), so a registry could serve other bytes`,
        `give the staging stack the same \`image.registry\` as prod so it references its image by repo digest, then ${upStaging}`,
      );
    } else if (pinned[1] !== digest) {
      reason(
        "ref-digest-mismatch",
        "imageRef",
        `output \`imageRef\` is pinned to ${pinned[1]}, but \`imageDigest\` is ${digest}`,
        `${upStaging} so both outputs describe the same image`,
      );
    }
  } else if (ref !== digest) {
    // Without a registry the reference is the local image id, which is itself the digest.
    reason(
      "ref-digest-mismatch",
      "imageRef",
      `output \`imageRef\` ${describe(ref)} is not the local image id ${digest} recorded in \`imageDigest\``,
      `${upStaging} so both outputs describe the same local image (or configure \`image.registry\` on both stacks)`,
    );
  }
}

function checkReadiness(
  raw: unknown,
  digest: string | undefined,
  policy: PromotionPolicy,
  now: Date,
  reason: AddReason,
): void {
  const recheck = `run \`pulumi up --stack ${policy.fromStack}\` to check staging again`;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    reason("invalid-output", "readiness", `output \`readiness\` is ${describe(raw)}, expected an object`, recheck);
    return;
  }
  const record = raw as Record<string, unknown>;

  // `ready` must be exactly the boolean true: "true", 1 or null are not proof of anything.
  if (record.ready !== true) {
    const what =
      record.ready === false
        ? "false: staging's last check did not see the service ready"
        : `${describe(record.ready)}, not the boolean true`;
    reason(
      "not-ready",
      "readiness.ready",
      `\`readiness.ready\` is ${what}`,
      `fix staging until its readiness check passes, then ${recheck}`,
    );
  }

  for (const field of ["url", "version"] as const) {
    if (!Readiness.shape[field].safeParse(record[field]).success) {
      const problem = `\`readiness.${field}\` is ${describe(record[field])}, expected a string`;
      reason("invalid-output", `readiness.${field}`, problem, recheck);
    }
  }

  const recorded = Digest.safeParse(record.imageDigest);
  if (!recorded.success) {
    reason(
      "invalid-output",
      "readiness.imageDigest",
      `\`readiness.imageDigest\` is ${describe(record.imageDigest)}, expected sha256:<64 hex digits>`,
      recheck,
    );
  } else if (digest !== undefined && recorded.data !== digest) {
    reason(
      "digest-mismatch",
      "readiness.imageDigest",
      `staging checked ${recorded.data}, but \`imageDigest\` is ${digest}: the readiness record is about another image`,
      recheck,
    );
  }

  checkCheckedAt(record.checkedAt, policy, now, reason, recheck);
  checkHardening(record.hardening, reason, recheck);
}

function checkCheckedAt(value: unknown, policy: PromotionPolicy, now: Date, reason: AddReason, recheck: string): void {
  const parsed = Readiness.shape.checkedAt.safeParse(value);
  const at = parsed.success ? Date.parse(parsed.data) : Number.NaN;
  if (Number.isNaN(at)) {
    reason(
      "invalid-output",
      "readiness.checkedAt",
      `\`readiness.checkedAt\` is ${describe(value)}, expected an ISO-8601 UTC time such as 2025-01-31T12:00:00Z`,
      recheck,
    );
    return;
  }
  const skewMs = (policy.clockSkewMinutes ?? DEFAULT_CLOCK_SKEW_MINUTES) * 60_000;
  const ageMs = now.getTime() - at;
  if (-ageMs > skewMs) {
    reason(
      "checked-in-future",
      "readiness.checkedAt",
      `\`readiness.checkedAt\` ${parsed.data} is ${formatDuration(-ageMs)} in the future (more than the ${formatDuration(skewMs)} of clock skew allowed)`,
      `synchronise the clocks (NTP) of this machine and the one that ran staging, then ${recheck}`,
    );
  } else if (ageMs > policy.maxAgeHours * HOUR_MS) {
    reason(
      "stale-readiness",
      "readiness.checkedAt",
      `staging was last checked at ${parsed.data}, ${formatDuration(ageMs)} ago, older than promotion.maxAgeHours = ${policy.maxAgeHours}`,
      recheck,
    );
  }
}

function checkHardening(raw: unknown, reason: AddReason, recheck: string): void {
  const keepProfile = "keep the hardening profile (components/hardening.ts) on the staging container";
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    reason(
      "invalid-output",
      "readiness.hardening",
      `\`readiness.hardening\` is ${raw === undefined ? "missing" : describe(raw)}, expected the hardening facts observed on staging's container`,
      recheck,
    );
    return;
  }
  const facts = raw as Record<string, unknown>;
  const field = <K extends keyof typeof Hardening.shape>(key: K): z.infer<(typeof Hardening.shape)[K]> | undefined => {
    const parsed = Hardening.shape[key].safeParse(facts[key]);
    if (parsed.success) return parsed.data as z.infer<(typeof Hardening.shape)[K]>;
    const expected = {
      user: "a user string",
      readOnlyRootFilesystem: "a boolean",
      capabilitiesDropped: "a list of capability names",
      noNewPrivileges: "a boolean",
    }[key];
    reason(
      "invalid-output",
      `readiness.hardening.${key}`,
      `\`readiness.hardening.${key}\` is ${facts[key] === undefined ? "missing" : describe(facts[key])}, expected ${expected}`,
      recheck,
    );
    return undefined;
  };

  const user = field("user");
  if (user !== undefined && isRootUser(user)) {
    reason(
      "root-user",
      "readiness.hardening.user",
      `staging's container ran as ${user === "" ? "the image default (root)" : JSON.stringify(user)}`,
      `run it as the image's non-root user: ${keepProfile}, then ${recheck}`,
    );
  }
  const readOnly = field("readOnlyRootFilesystem");
  if (readOnly === false) {
    reason(
      "writable-root",
      "readiness.hardening.readOnlyRootFilesystem",
      "staging's container had a writable root file system",
      `${keepProfile} (read-only root), then ${recheck}`,
    );
  }
  const dropped = field("capabilitiesDropped");
  if (dropped !== undefined && !dropped.some((cap) => cap.toUpperCase() === "ALL")) {
    reason(
      "capabilities-kept",
      "readiness.hardening.capabilitiesDropped",
      `staging's container did not drop ALL capabilities (dropped: ${dropped.length === 0 ? "none" : dropped.join(", ")})`,
      `${keepProfile} (cap-drop ALL), then ${recheck}`,
    );
  }
  const noNewPrivileges = field("noNewPrivileges");
  if (noNewPrivileges === false) {
    reason(
      "new-privileges-allowed",
      "readiness.hardening.noNewPrivileges",
      "staging's container allowed privilege escalation (no-new-privileges was off)",
      `${keepProfile} (security-opt no-new-privileges), then ${recheck}`,
    );
  }
}

/** A duration in the largest unit that keeps it readable, e.g. "26.0 h", "7 min". */
export function formatDuration(ms: number): string {
  if (ms >= 2 * HOUR_MS) return `${(ms / HOUR_MS).toFixed(1)} h`;
  if (ms >= 60_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 1000)} s`;
}

/** The outputs of the stack's own last update that decide its rollback target. */
export interface PreviousOutputs {
  readonly imageRef?: string;
  readonly previousImageRef?: string;
}

/**
 * The rollback target after an update that runs `next`: the last *different* image the stack ran.
 * An update that keeps the image (a rerun, a secret rotation) keeps the target it had.
 */
export function nextPreviousImageRef(previous: PreviousOutputs, next: string): string | undefined {
  if (previous.imageRef === undefined || previous.imageRef === next) return previous.previousImageRef;
  return previous.imageRef;
}

/** The staging outputs as plain (non-secret) details, the way a reader of plain outputs sees them. */
export function plainOutputs(values: Readonly<Record<string, unknown>>): StagingOutputs {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, { value }]));
}
