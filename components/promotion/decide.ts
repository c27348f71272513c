/**
 * The prod promotion decision, as a pure function: given what the staging stack exported, may prod
 * take its image? readStaging.ts holds staging's outputs to the contract; this module adds the
 * rules that compare them (digests, age, hardening). No Pulumi resources here, so every rule is
 * tested without mocks; the gate (gate.ts) reads the stacks and acts on the answer.
 *
 * Fail closed: anything missing, malformed, stale or doubtful is a reason to refuse, and every
 * reason names the output it is about and the command that fixes it.
 */
import { isRootUser, type Hardening, type RollbackRecord } from "../contract";
import type { PromotionReason, ReasonCode } from "./reasons";
import { OUTPUT_ORDER, describe, fixes, readStaging, type OutputPath, type StagingOutputs } from "./readStaging";

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
  /** The release prod last rolled back from, while prod runs the image it rolled back to: not promoted again. */
  readonly rolledBackFrom?: RollbackRecord;
  /** The certificate prod serves after this update, when its proxy terminates TLS and it is known. */
  readonly certificate?: ProdCertificate;
  /** Refuse while that certificate expires within this many days (`promotion.minCertificateDays`). */
  readonly minCertificateDays?: number;
}

/** Prod's own certificate, as the gate holds it against `minCertificateDays`. */
export interface ProdCertificate {
  /** ISO-8601. */
  readonly notAfter: string;
  /** `configured`: the chain in `proxy.tls.certificate`; `served`: what the proxy served when the program started (`acme`). */
  readonly source: "configured" | "served";
  /** The prod stack (for fix commands) and its proxy's container (whose log says why a renewal fails). */
  readonly stack: string;
  readonly proxyContainer: string;
}

/** The answer: allowed only when there is no reason against it. */
export interface PromotionDecision {
  readonly allowed: boolean;
  readonly reasons: readonly PromotionReason[];
}

const DEFAULT_CLOCK_SKEW_MINUTES = 5;
const DEFAULT_MIN_CERTIFICATE_DAYS = 7;
const PINNED_REF = /^[^\s@]+@(sha256:[0-9a-f]{64})$/;
const HOUR_MS = 3_600_000;

/**
 * Decides whether prod may promote staging's image. Pure: reads only its arguments, so the same
 * outputs, policy and clock always give the same answer (in `pulumi up` and `pulumi preview`).
 */
export function decidePromotion(staging: StagingOutputs, policy: PromotionPolicy, now: Date): PromotionDecision {
  checkPolicy(policy, now);
  const read = readStaging(staging, policy.fromStack);
  const reasons = [...read.reasons];
  const { recheck } = fixes(policy.fromStack);
  const reason = (code: ReasonCode, output: OutputPath, problem: string, fix: string): void => {
    reasons.push({ code, output, problem, fix, overridable: true });
  };
  const at = (path: OutputPath): unknown =>
    path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], read.values);

  const digest = read.valid("imageDigest") ? (at("imageDigest") as string) : undefined;
  if (digest !== undefined && read.valid("imageRef")) checkReference(at("imageRef") as string, digest, policy, reason);
  if (read.valid("imageRef") && at("imageRef") === policy.rolledBackFrom?.fromImageRef) {
    reason(
      "rolled-back-image",
      "imageRef",
      `staging offers ${String(at("imageRef"))}, the release prod rolled back from at ${policy.rolledBackFrom?.at}`,
      `deploy a fixed release to staging (\`pulumi up --stack ${policy.fromStack}\`), or lift this once with promotion.override`,
    );
  }

  if (read.valid("readiness.ready") && at("readiness.ready") === false) {
    reason(
      "not-ready",
      "readiness.ready",
      "`readiness.ready` is false: staging's last check did not see the service ready",
      `fix staging until its readiness check passes, then ${recheck}`,
    );
  }
  if (digest !== undefined && read.valid("readiness.imageDigest") && at("readiness.imageDigest") !== digest) {
    reason(
      "digest-mismatch",
      "readiness.imageDigest",
      `staging checked ${String(at("readiness.imageDigest"))}, but \`imageDigest\` is ${digest}: the readiness record is about another image`,
      recheck,
    );
  }
  if (read.valid("readiness.checkedAt")) checkAge(at("readiness.checkedAt") as string, policy, now, reason, recheck);
  const keepProfile = "keep the hardening profile (components/hardening.ts) on the staging container";
  const fact = <K extends keyof Hardening>(key: K): Hardening[K] | undefined =>
    read.valid(`readiness.hardening.${key}`) ? (at(`readiness.hardening.${key}`) as Hardening[K]) : undefined;
  const user = fact("user");
  if (user !== undefined && isRootUser(user)) {
    reason(
      "root-user",
      "readiness.hardening.user",
      `staging's container ran as ${user === "" ? "the image default (root)" : JSON.stringify(user)}`,
      `run it as the image's non-root user: ${keepProfile}, then ${recheck}`,
    );
  }
  if (fact("readOnlyRootFilesystem") === false) {
    reason("writable-root", "readiness.hardening.readOnlyRootFilesystem", "staging's container had a writable root file system", `${keepProfile} (read-only root), then ${recheck}`);
  }
  const dropped = fact("capabilitiesDropped");
  if (dropped !== undefined && !dropped.some((cap) => cap.toUpperCase() === "ALL")) {
    reason(
      "capabilities-kept",
      "readiness.hardening.capabilitiesDropped",
      `staging's container did not drop ALL capabilities (dropped: ${dropped.length === 0 ? "none" : dropped.join(", ")})`,
      `${keepProfile} (cap-drop ALL), then ${recheck}`,
    );
  }
  if (fact("noNewPrivileges") === false) {
    reason(
      "new-privileges-allowed",
      "readiness.hardening.noNewPrivileges",
      "staging's container allowed privilege escalation (no-new-privileges was off)",
      `${keepProfile} (security-opt no-new-privileges), then ${recheck}`,
    );
  }

  if (policy.certificate !== undefined) checkCertificate(policy.certificate, policy.minCertificateDays ?? DEFAULT_MIN_CERTIFICATE_DAYS, now, reason);

  const ordered = orderReasons(reasons);
  return { allowed: ordered.length === 0, reasons: ordered };
}

/** Reasons in output order (stable within one output), so one bad output never hides or reorders another's problem. */
export function orderReasons(reasons: readonly PromotionReason[]): PromotionReason[] {
  const rank = (r: PromotionReason) => (OUTPUT_ORDER as readonly string[]).indexOf(r.output);
  return reasons.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r) - rank(b.r) || a.i - b.i).map(({ r }) => r);
}

function checkPolicy(policy: PromotionPolicy, now: Date): void {
  const problems: string[] = [];
  if (typeof policy.fromStack !== "string" || policy.fromStack.trim() === "") problems.push("fromStack must name the staging stack");
  if (!Number.isFinite(policy.maxAgeHours) || policy.maxAgeHours <= 0) {
    problems.push(`maxAgeHours must be a positive number of hours, got ${String(policy.maxAgeHours)}`);
  }
  const skew = policy.clockSkewMinutes ?? DEFAULT_CLOCK_SKEW_MINUTES;
  if (!Number.isFinite(skew) || skew < 0) problems.push(`clockSkewMinutes must be zero or more, got ${String(skew)}`);
  const minDays = policy.minCertificateDays ?? DEFAULT_MIN_CERTIFICATE_DAYS;
  if (!Number.isFinite(minDays) || minDays < 0) problems.push(`minCertificateDays must be zero or more, got ${String(minDays)}`);
  if (Number.isNaN(now.getTime())) problems.push("now must be a valid date");
  if (problems.length > 0) {
    throw new RangeError(`invalid promotion policy: ${problems.join("; ")} (set it with \`pulumi config set --path promotion.maxAgeHours <hours>\`)`);
  }
}

type AddReason = (code: ReasonCode, output: OutputPath, problem: string, fix: string) => void;

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
      reason("ref-digest-mismatch", "imageRef", `output \`imageRef\` is pinned to ${pinned[1]}, but \`imageDigest\` is ${digest}`, `${upStaging} so both outputs describe the same image`);
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

function checkAge(checkedAt: string, policy: PromotionPolicy, now: Date, reason: AddReason, recheck: string): void {
  const at = Date.parse(checkedAt);
  if (Number.isNaN(at)) {
    // The contract's format check lets an impossible day (February 30th) through; the clock does not.
    reason(
      "invalid-output",
      "readiness.checkedAt",
      `\`readiness.checkedAt\` is ${describe(checkedAt)}, expected an ISO-8601 UTC time such as 2025-01-31T12:00:00Z`,
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
      `\`readiness.checkedAt\` ${checkedAt} is ${formatDuration(-ageMs)} in the future (more than the ${formatDuration(skewMs)} of clock skew allowed)`,
      `synchronise the clocks (NTP) of this machine and the one that ran staging, then ${recheck}`,
    );
  } else if (ageMs > policy.maxAgeHours * HOUR_MS) {
    reason(
      "stale-readiness",
      "readiness.checkedAt",
      `staging was last checked at ${checkedAt}, ${formatDuration(ageMs)} ago, older than promotion.maxAgeHours = ${policy.maxAgeHours}`,
      recheck,
    );
  }
}

/**
 * Prod must not go on with a certificate about to expire: a chain of the user's that was not renewed
 * in time, or an ACME certificate Caddy has failed to renew (it renews with a third of its life left).
 */
function checkCertificate(certificate: ProdCertificate, minDays: number, now: Date, reason: AddReason): void {
  const left = Date.parse(certificate.notAfter) - now.getTime();
  if (Number.isNaN(left) || left >= minDays * 24 * HOUR_MS) return;
  const days = (ms: number) => `${(ms / (24 * HOUR_MS)).toFixed(1)} days`;
  const when = left <= 0 ? `expired ${days(-left)} ago (${certificate.notAfter})` : `expires in ${days(left)} (${certificate.notAfter})`;
  const override = "or lift this once with promotion.override";
  if (certificate.source === "configured") {
    reason(
      "certificate-expiring",
      "proxy.tls.certificate",
      `the certificate prod is given in proxy.tls.certificate ${when}, within promotion.minCertificateDays = ${minDays}`,
      `renew it and set the new chain and key: \`pulumi config set --stack ${certificate.stack} --path proxy.tls.certificate < fullchain.pem\` ` +
        `and \`pulumi config set --stack ${certificate.stack} --secret tlsPrivateKey < privkey.pem\`, then \`pulumi up --stack ${certificate.stack}\`; ${override}`,
    );
  } else {
    reason(
      "certificate-expiring",
      "tls.notAfter",
      `the certificate prod's proxy serves ${when}, within promotion.minCertificateDays = ${minDays}: Caddy has not managed to renew it`,
      `read why in the proxy's log on prod's Docker host (\`docker logs ${certificate.proxyContainer}\`: proxy.domain's DNS, port 80 reachable from the internet, ` +
        `the CA's rate limits), fix it, then \`pulumi up --stack ${certificate.stack}\`; ${override}`,
    );
  }
}

/** A duration in the largest unit that keeps it readable, e.g. "26.0 h", "7 min". */
export function formatDuration(ms: number): string {
  if (ms >= 2 * HOUR_MS) return `${(ms / HOUR_MS).toFixed(1)} h`;
  if (ms >= 60_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 1000)} s`;
}
