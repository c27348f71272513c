import { describe, expect, it } from "vitest";
import { decidePromotion, formatDuration, type PromotionPolicy } from "../components/promotion/decide";
import { keptRollback, nextPreviousImageRef, planRollback } from "../components/release/history";
import type { StagingOutputs } from "../components/promotion/readStaging";
import { type ReasonCode } from "../components/promotion/reasons";
import { PromotionReason, formatReasons, formatVerdict, readVerdict, refusalMessage } from "../components/promotion/reasons";
import { plainOutputs, stagingRecord, without } from "../support/stagingRecord";

const DIGEST = `sha256:${"a".repeat(64)}`;
const OTHER_DIGEST = `sha256:${"b".repeat(64)}`;
const NOW = new Date("2025-06-01T12:00:00Z");
const FROM = "organization/backend-delivery/staging";
const LOCAL: PromotionPolicy = { fromStack: FROM, maxAgeHours: 24, registry: false };
const REGISTRY: PromotionPolicy = { ...LOCAL, registry: true };

/** A healthy staging record for a local image (imageRef is the image id). */
const { hardening, readiness, outputs: staging } = stagingRecord({ digest: DIGEST, checkedAt: "2025-06-01T11:00:00Z", version: "0.1.0" });

function decide(values: Record<string, unknown>, policy: PromotionPolicy = LOCAL, now: Date = NOW) {
  return decidePromotion(plainOutputs(values), policy, now);
}

/** The (code, output) pairs of a decision, which is what tells the reasons apart. */
function codes(values: Record<string, unknown>, policy: PromotionPolicy = LOCAL, now: Date = NOW) {
  return decide(values, policy, now).reasons.map((r) => [r.code, r.output]);
}

describe("decidePromotion: allowed", () => {
  it("allows a fresh, ready, hardened local image whose ref is its id", () => {
    expect(decide(staging())).toEqual({ allowed: true, reasons: [] });
  });

  it("allows a registry image pinned to the checked digest", () => {
    const values = staging({ imageRef: `registry.example.com/backend@${DIGEST}` });
    expect(decide(values, REGISTRY)).toEqual({ allowed: true, reasons: [] });
  });

  it("allows a check within the clock skew in the future and one just inside maxAgeHours", () => {
    const soon = staging({ readiness: readiness({ checkedAt: "2025-06-01T12:04:59Z" }) });
    expect(decide(soon).allowed).toBe(true);
    const old = staging({ readiness: readiness({ checkedAt: "2025-05-31T12:00:00Z" }) });
    expect(decide(old).allowed).toBe(true);
  });

  it("accepts a user name or uid other than root and lowercase 'all'", () => {
    const values = staging({
      readiness: readiness({ hardening: hardening({ user: "app", capabilitiesDropped: ["all"] }) }),
    });
    expect(decide(values).allowed).toBe(true);
  });
});

describe("decidePromotion: blocked, one reason each", () => {
  const cases: Array<[string, Record<string, unknown>, ReasonCode, string, PromotionPolicy?]> = [
    ["environment missing", without(staging(), "environment"), "missing-output", "environment"],
    ["imageRef missing", without(staging(), "imageRef"), "missing-output", "imageRef"],
    ["imageDigest missing", without(staging(), "imageDigest"), "missing-output", "imageDigest"],
    ["readiness missing", without(staging(), "readiness"), "missing-output", "readiness"],
    ["readiness null", staging({ readiness: null }), "missing-output", "readiness"],
    ["environment prod", staging({ environment: "prod" }), "wrong-environment", "environment"],
    ["environment a number", staging({ environment: 1 }), "wrong-environment", "environment"],
    ["imageRef a number", staging({ imageRef: 42 }), "invalid-output", "imageRef"],
    ["imageRef empty", staging({ imageRef: "  " }), "invalid-output", "imageRef"],
    ["readiness a string", staging({ readiness: "ready" }), "invalid-output", "readiness"],
    ["ready false", staging({ readiness: readiness({ ready: false }) }), "not-ready", "readiness.ready"],
    ["ready null", staging({ readiness: readiness({ ready: null }) }), "not-ready", "readiness.ready"],
    ['ready "true"', staging({ readiness: readiness({ ready: "true" }) }), "not-ready", "readiness.ready"],
    ["ready 1", staging({ readiness: readiness({ ready: 1 }) }), "not-ready", "readiness.ready"],
    ["ready missing", staging({ readiness: without(readiness(), "ready") }), "not-ready", "readiness.ready"],
    [
      "readiness checked another digest",
      staging({ readiness: readiness({ imageDigest: OTHER_DIGEST }) }),
      "digest-mismatch",
      "readiness.imageDigest",
    ],
    [
      "readiness digest malformed",
      staging({ readiness: readiness({ imageDigest: "sha256:xyz" }) }),
      "invalid-output",
      "readiness.imageDigest",
    ],
    [
      "unpinned tag with a registry",
      staging({ imageRef: "registry.example.com/backend:latest" }),
      "unpinned-ref",
      "imageRef",
      REGISTRY,
    ],
    [
      "bare image id with a registry",
      staging(),
      "unpinned-ref",
      "imageRef",
      REGISTRY,
    ],
    [
      "ref pinned to another digest with a registry",
      staging({ imageRef: `registry.example.com/backend@${OTHER_DIGEST}` }),
      "ref-digest-mismatch",
      "imageRef",
      REGISTRY,
    ],
    [
      "local ref that is a tag, not the image id",
      staging({ imageRef: "backend:latest" }),
      "ref-digest-mismatch",
      "imageRef",
    ],
    [
      "stale: 24 h and 1 s old",
      staging({ readiness: readiness({ checkedAt: "2025-05-31T11:59:59Z" }) }),
      "stale-readiness",
      "readiness.checkedAt",
    ],
    [
      "future: 5 min and 1 s ahead",
      staging({ readiness: readiness({ checkedAt: "2025-06-01T12:05:01Z" }) }),
      "checked-in-future",
      "readiness.checkedAt",
    ],
    [
      "unparsable date",
      staging({ readiness: readiness({ checkedAt: "yesterday" }) }),
      "invalid-output",
      "readiness.checkedAt",
    ],
    [
      "impossible date",
      staging({ readiness: readiness({ checkedAt: "2025-02-30T10:00:00Z" }) }),
      "invalid-output",
      "readiness.checkedAt",
    ],
    [
      "date with a non-UTC offset",
      staging({ readiness: readiness({ checkedAt: "2025-06-01T11:00:00+02:00" }) }),
      "invalid-output",
      "readiness.checkedAt",
    ],
    [
      "hardening missing",
      staging({ readiness: without(readiness(), "hardening") }),
      "invalid-output",
      "readiness.hardening",
    ],
    [
      "user root",
      staging({ readiness: readiness({ hardening: hardening({ user: "root" }) }) }),
      "root-user",
      "readiness.hardening.user",
    ],
    [
      "user 0:0",
      staging({ readiness: readiness({ hardening: hardening({ user: "0:0" }) }) }),
      "root-user",
      "readiness.hardening.user",
    ],
    [
      "user empty (image default)",
      staging({ readiness: readiness({ hardening: hardening({ user: "" }) }) }),
      "root-user",
      "readiness.hardening.user",
    ],
    [
      "user missing",
      staging({ readiness: readiness({ hardening: without(hardening(), "user") }) }),
      "invalid-output",
      "readiness.hardening.user",
    ],
    [
      "writable root",
      staging({ readiness: readiness({ hardening: hardening({ readOnlyRootFilesystem: false }) }) }),
      "writable-root",
      "readiness.hardening.readOnlyRootFilesystem",
    ],
    [
      "read-only root as a string",
      staging({ readiness: readiness({ hardening: hardening({ readOnlyRootFilesystem: "true" }) }) }),
      "invalid-output",
      "readiness.hardening.readOnlyRootFilesystem",
    ],
    [
      "capabilities not dropped",
      staging({ readiness: readiness({ hardening: hardening({ capabilitiesDropped: ["NET_RAW"] }) }) }),
      "capabilities-kept",
      "readiness.hardening.capabilitiesDropped",
    ],
    [
      "capabilities missing",
      staging({ readiness: readiness({ hardening: without(hardening(), "capabilitiesDropped") }) }),
      "invalid-output",
      "readiness.hardening.capabilitiesDropped",
    ],
    [
      "new privileges allowed",
      staging({ readiness: readiness({ hardening: hardening({ noNewPrivileges: false }) }) }),
      "new-privileges-allowed",
      "readiness.hardening.noNewPrivileges",
    ],
    [
      "no-new-privileges missing",
      staging({ readiness: readiness({ hardening: without(hardening(), "noNewPrivileges") }) }),
      "invalid-output",
      "readiness.hardening.noNewPrivileges",
    ],
    [
      "version missing",
      staging({ readiness: without(readiness(), "version") }),
      "invalid-output",
      "readiness.version",
    ],
  ];

  it.each(cases)("%s", (_name, values, code, output, policy) => {
    const decision = decide(values, policy ?? LOCAL);
    expect(decision.allowed).toBe(false);
    expect(decision.reasons.map((r) => [r.code, r.output])).toEqual([[code, output]]);
  });
});

describe("decidePromotion: messages", () => {
  it("names the output and the staging up command in every reason", () => {
    const decision = decide(staging({ readiness: readiness({ ready: false }) }));
    const [reason] = decision.reasons;
    expect(reason?.problem).toBe("`readiness.ready` is false: staging's last check did not see the service ready");
    expect(reason?.fix).toBe(
      `fix staging until its readiness check passes, then run \`pulumi up --stack ${FROM}\` to check staging again`,
    );
    expect(formatReasons([reason!])).toBe(`✖ ${reason!.problem}\n  → at readiness.ready\n    fix: ${reason!.fix}`);
  });

  it('says a "true" string is not the boolean true', () => {
    const [reason] = decide(staging({ readiness: readiness({ ready: "true" }) })).reasons;
    expect(reason?.problem).toBe('`readiness.ready` is "true" (a string), not the boolean true');
  });

  it("states age and limit of a stale check", () => {
    const values = staging({ readiness: readiness({ checkedAt: "2025-05-30T10:00:00Z" }) });
    const [reason] = decide(values).reasons;
    expect(reason?.problem).toBe(
      "staging was last checked at 2025-05-30T10:00:00Z, 50.0 h ago, older than promotion.maxAgeHours = 24",
    );
  });

  it("points a wrong environment at promotion.fromStack and refuses to let an override lift it", () => {
    const [reason] = decide(staging({ environment: "prod" })).reasons;
    expect(reason?.problem).toBe(`${FROM} has environment "prod" (a string), expected "staging"`);
    expect(reason?.fix).toContain("pulumi config set --path promotion.fromStack");
    expect(reason?.overridable).toBe(false);
  });

  it("truncates long values instead of echoing them whole", () => {
    const [reason] = decide(staging({ imageRef: "x".repeat(300) })).reasons;
    expect(reason?.problem).toContain(`"${"x".repeat(77)}..." (a string)`);
    expect(reason?.problem).not.toContain("x".repeat(78));
  });
});

describe("decidePromotion: several reasons at once", () => {
  it("lists every problem, in output order", () => {
    const values = staging({
      environment: "prod",
      imageRef: "backend:latest",
      readiness: readiness({
        ready: false,
        imageDigest: OTHER_DIGEST,
        checkedAt: "2025-05-01T00:00:00Z",
        hardening: hardening({ user: "0", readOnlyRootFilesystem: false, capabilitiesDropped: [], noNewPrivileges: false }),
      }),
    });
    expect(codes(values)).toEqual([
      ["wrong-environment", "environment"],
      ["ref-digest-mismatch", "imageRef"],
      ["not-ready", "readiness.ready"],
      ["digest-mismatch", "readiness.imageDigest"],
      ["stale-readiness", "readiness.checkedAt"],
      ["root-user", "readiness.hardening.user"],
      ["writable-root", "readiness.hardening.readOnlyRootFilesystem"],
      ["capabilities-kept", "readiness.hardening.capabilitiesDropped"],
      ["new-privileges-allowed", "readiness.hardening.noNewPrivileges"],
    ]);
  });

  it("reports every missing output when staging exported nothing", () => {
    const decision = decidePromotion({}, LOCAL, NOW);
    expect(decision.reasons.map((r) => [r.code, r.output, r.overridable])).toEqual([
      ["missing-output", "environment", true],
      ["missing-output", "imageRef", false],
      ["missing-output", "imageDigest", false],
      ["missing-output", "readiness", true],
    ]);
  });

  it("still checks readiness when imageDigest is malformed", () => {
    const values = staging({ imageDigest: "latest", readiness: readiness({ ready: false }) });
    expect(codes(values)).toEqual([
      ["invalid-output", "imageDigest"],
      ["not-ready", "readiness.ready"],
    ]);
  });
});

describe("decidePromotion: secret outputs", () => {
  it("refuses a secret output without echoing its value", () => {
    const outputs: StagingOutputs = {
      ...plainOutputs(staging()),
      imageRef: { secretValue: "registry.example.com/hidden-value" },
    };
    const decision = decidePromotion(outputs, LOCAL, NOW);
    expect(decision.reasons.map((r) => [r.code, r.output, r.overridable])).toEqual([
      ["secret-output", "imageRef", false],
    ]);
    expect(JSON.stringify(decision)).not.toContain("hidden-value");
  });
});

describe("decidePromotion: policy", () => {
  it("honours a tighter maxAgeHours and a custom clock skew", () => {
    const values = staging({ readiness: readiness({ checkedAt: "2025-06-01T10:30:00Z" }) });
    expect(codes(values, { ...LOCAL, maxAgeHours: 1 })).toEqual([["stale-readiness", "readiness.checkedAt"]]);
    const ahead = staging({ readiness: readiness({ checkedAt: "2025-06-01T12:01:00Z" }) });
    expect(codes(ahead, { ...LOCAL, clockSkewMinutes: 0 })).toEqual([["checked-in-future", "readiness.checkedAt"]]);
  });

  it("throws on a policy that cannot be applied, naming each problem", () => {
    expect(() => decidePromotion({}, { ...LOCAL, maxAgeHours: 0 }, NOW)).toThrow(
      "invalid promotion policy: maxAgeHours must be a positive number of hours, got 0",
    );
    expect(() => decidePromotion({}, { ...LOCAL, fromStack: "", maxAgeHours: Number.NaN }, NOW)).toThrow(
      "fromStack must name the staging stack; maxAgeHours must be a positive number of hours, got NaN",
    );
    expect(() => decidePromotion({}, LOCAL, new Date("nope"))).toThrow("now must be a valid date");
  });

  it("is pure: the same input gives the same answer and is not mutated", () => {
    const values = staging({ readiness: readiness({ ready: false }) });
    const before = JSON.stringify(values);
    expect(decide(values)).toEqual(decide(values));
    expect(JSON.stringify(values)).toBe(before);
  });
});

describe("decidePromotion: prod's own certificate", () => {
  const inDays = (days: number) => new Date(NOW.getTime() + days * 86_400_000).toISOString();
  const cert = (days: number, source: "configured" | "served" = "configured") => ({ notAfter: inDays(days), source, stack: "prod", proxyContainer: "backend-delivery-prod-proxy" });

  it("refuses a certificate that expires within minCertificateDays (7 unless told), after staging's reasons, and lets an override lift it", () => {
    const decision = decide(staging({ readiness: readiness({ ready: false }) }), { ...LOCAL, certificate: cert(6.5) });
    expect(decision.reasons.map((r) => [r.code, r.output, r.overridable])).toEqual([
      ["not-ready", "readiness.ready", true],
      ["certificate-expiring", "proxy.tls.certificate", true],
    ]);
    expect(decision.reasons[1]!.problem).toBe(`the certificate prod is given in proxy.tls.certificate expires in 6.5 days (${inDays(6.5)}), within promotion.minCertificateDays = 7`);
    expect(codes(staging(), { ...LOCAL, certificate: cert(7.5) })).toEqual([]);
    expect(codes(staging(), { ...LOCAL, certificate: cert(6.5), minCertificateDays: 3 })).toEqual([]);
  });

  it("says an expired one expired, and points a served one at the proxy's log", () => {
    const [expired] = decide(staging(), { ...LOCAL, certificate: cert(-1.25), minCertificateDays: 0 }).reasons;
    expect(expired?.problem).toContain(`expired 1.3 days ago (${inDays(-1.25)})`);
    const [served] = decide(staging(), { ...LOCAL, certificate: cert(2, "served") }).reasons;
    expect([served?.code, served?.output]).toEqual(["certificate-expiring", "tls.notAfter"]);
    expect(served?.problem).toContain("Caddy has not managed to renew it");
    expect(served?.fix).toContain("`docker logs backend-delivery-prod-proxy`");
    expect(served?.fix).toContain("`pulumi up --stack prod`");
  });

  it("throws on a negative minCertificateDays", () => {
    expect(() => decidePromotion({}, { ...LOCAL, minCertificateDays: -1 }, NOW)).toThrow("minCertificateDays must be zero or more, got -1");
  });
});

describe("formatDuration", () => {
  it("picks a readable unit", () => {
    expect(formatDuration(30_000)).toBe("30 s");
    expect(formatDuration(7 * 60_000)).toBe("7 min");
    expect(formatDuration(26 * 3_600_000)).toBe("26.0 h");
  });
});

describe("nextPreviousImageRef: the rollback target", () => {
  const A = `sha256:${"1".repeat(64)}`;
  const B = `sha256:${"2".repeat(64)}`;
  const C = `sha256:${"3".repeat(64)}`;

  it("is absent on the first deploy", () => {
    expect(nextPreviousImageRef({}, A)).toBeUndefined();
  });

  it("is what the stack ran before when the image changes", () => {
    expect(nextPreviousImageRef({ imageRef: A }, B)).toBe(A);
    expect(nextPreviousImageRef({ imageRef: B, previousImageRef: A }, C)).toBe(B);
  });

  it("is kept by an update that keeps the image (a rerun, a rotation)", () => {
    expect(nextPreviousImageRef({ imageRef: A }, A)).toBeUndefined();
    expect(nextPreviousImageRef({ imageRef: B, previousImageRef: A }, B)).toBe(A);
  });
});

describe("rollback: the plan and the record", () => {
  const A = `sha256:${"1".repeat(64)}`;
  const B = `sha256:${"2".repeat(64)}`;
  const C = `sha256:${"3".repeat(64)}`;
  const NOW_AT = new Date("2030-01-01T00:00:00Z");

  it("rolls back to the rollback target and records what it left", () => {
    expect(planRollback({ imageRef: B, previousImageRef: A }, A, NOW_AT)).toEqual({
      ok: true,
      target: A,
      record: { fromImageRef: B, at: "2030-01-01T00:00:00.000Z" },
    });
  });

  it("refuses with nothing to roll back to, or a target that changed since it was read", () => {
    expect(planRollback({}, A, NOW_AT)).toEqual({ ok: false, problem: expect.stringContaining("no earlier release to roll back to") as unknown });
    expect(planRollback({ imageRef: B }, A, NOW_AT)).toMatchObject({ ok: false });
    const moved = planRollback({ imageRef: C, previousImageRef: B }, A, NOW_AT);
    expect(moved).toEqual({ ok: false, problem: expect.stringContaining(`asked for ${A}, but the stack's rollback target is now ${B}`) as unknown });
  });

  it("keeps the record while the stack runs the image it rolled back to, and drops it with the next image", () => {
    const record = { fromImageRef: B, at: "2030-01-01T00:00:00.000Z" };
    expect(keptRollback({ imageRef: A, rollback: record }, A)).toEqual(record);
    expect(keptRollback({ imageRef: A, rollback: record }, C)).toBeUndefined();
    expect(keptRollback({ imageRef: A }, A)).toBeUndefined();
  });

  it("refuses to promote again the release prod rolled back from, and lets an override lift it", () => {
    const rolledBackFrom = { fromImageRef: DIGEST, at: "2025-06-01T11:30:00.000Z" };
    const decision = decidePromotion(plainOutputs(staging()), { ...LOCAL, rolledBackFrom }, NOW);
    expect(decision.reasons.map((r) => [r.code, r.output, r.overridable])).toEqual([["rolled-back-image", "imageRef", true]]);
    expect(decision.reasons[0]?.problem).toBe(`staging offers ${DIGEST}, the release prod rolled back from at 2025-06-01T11:30:00.000Z`);
    expect(decidePromotion(plainOutputs(staging()), { ...LOCAL, rolledBackFrom: { ...rolledBackFrom, fromImageRef: OTHER_DIGEST } }, NOW).allowed).toBe(true);
  });
});

describe("promotion verdict: what the gate logs, the comment reads back", () => {
  const refused = decide(staging({ readiness: readiness({ ready: false, checkedAt: "2025-05-30T10:00:00Z" }) }));

  it("round-trips a refusal with every reason, code and fix", () => {
    const verdict = { allowed: false as const, fromStack: FROM, reasons: refused.reasons.map((r) => ({ ...r })) };
    const line = formatVerdict(verdict);
    expect(line.startsWith("promotion verdict: {")).toBe(true);
    expect(line).not.toContain("\n");
    // As the engine hands diagnostics over: a severity prefix, a trailing newline, other messages around.
    expect(readVerdict(["warning: something else\n", `info: ${line}\n`])).toEqual(verdict);
    expect(refused.reasons.map((r) => r.code)).toEqual(["not-ready", "stale-readiness"]);
  });

  it("round-trips an allowed promotion with the digest and staging's check time", () => {
    const verdict = { allowed: true as const, fromStack: FROM, imageRef: DIGEST, imageDigest: DIGEST, checkedAt: "2025-06-01T11:00:00.000Z" };
    expect(readVerdict([formatVerdict(verdict)])).toEqual(verdict);
  });

  it("finds nothing where the gate did not decide, and refuses a verdict line that breaks the contract", () => {
    expect(readVerdict(["error: Stack \"prod\" config is invalid (1 problem)"])).toBeUndefined();
    expect(() => readVerdict(['promotion verdict: {"allowed":true}'])).toThrow(/breaks the contract/);
    expect(() => readVerdict(["promotion verdict: {not json"])).toThrow(/is not JSON/);
    expect(() => formatVerdict({ allowed: false, fromStack: FROM, reasons: [] })).toThrow();
  });

  it("words the refusal from the same reasons: each output, problem and fix", () => {
    const verdict = { allowed: false as const, fromStack: FROM, reasons: refused.reasons.map((r) => PromotionReason.parse(r)) };
    const text = refusalMessage(verdict, false);
    expect(text.split("\n")).toEqual([
      `prod promotion from ${FROM} refused (2 reasons); no prod resource was touched:`,
      ...refused.reasons.flatMap((r) => [`✖ ${r.problem}`, `  → at ${r.output}`, `    fix: ${r.fix}`]),
    ]);
    expect(refusalMessage(verdict, true)).toBe(text);
  });
});
