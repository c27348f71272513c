/**
 * The prod program under Pulumi's mocks: the promotion gate decides before any prod resource is
 * constructed. Each blocked case must register nothing but the gate itself (its component and its
 * two stack references); the valid case must run exactly the image staging proved ready.
 */
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { PROJECT, RecordingMocks, asSeenByEngine, awaitOutput, fakeDigest, removeStackFiles, settleRegistrations, setUpStack, type RegistryCheckCall } from "../support/mocks";
import { canaryDatabaseUrl } from "../support/canary";
import { stagingRecord, without } from "../support/stagingRecord";
import { readVerdict, type PromotionVerdict } from "../components/promotion/reasons";
import { UNSIGNED_WITHOUT_REGISTRY } from "../components/promotion/signature";
import { publicKeyFingerprint } from "../components/supplyChain/keys";
import { testPublicKey } from "../support/signingKeys";

afterAll(removeStackFiles);

// The registry checks ask a real engine and registry (test/deliveryInfra.docker.test.ts and the
// end-to-end suite do that); here they are recorded, and refuse when told to.
const registry = vi.hoisted(() => ({ calls: [] as RegistryCheckCall[], refuse: {} as { message?: string } }));
vi.mock("../components/docker/preflight", async (importOriginal) =>
  (await import("../support/mocks")).recordingPreflight(importOriginal, registry.calls, registry.refuse),
);

// The signature check asks cosign and a real registry (test/supplyChain.docker.test.ts and the
// end-to-end suite do that); here it records what it was asked and answers what a test sets.
const signature = vi.hoisted(() => ({
  calls: [] as { imageRef: string; login: unknown; publicKey: string }[],
  answer: undefined as unknown,
}));
vi.mock("../components/supplyChain/verify", async (importOriginal) => ({
  ...(await importOriginal<object>()),
  verifyImage: (image: { imageRef: string; login: unknown }, publicKey: string) => {
    signature.calls.push({ imageRef: image.imageRef, login: image.login, publicKey });
    return signature.answer instanceof Error ? Promise.reject(signature.answer) : Promise.resolve(signature.answer);
  },
}));

const STACK = "prod";
const STAGING = `organization/${PROJECT}/staging`;
const SELF = `organization/${PROJECT}/${STACK}`;
const DIGEST = `sha256:${"d".repeat(64)}`;
const OLD_DIGEST = `sha256:${"0".repeat(64)}`;
const OTHER_DIGEST = `sha256:${"e".repeat(64)}`;
// An hour old: well inside the default promotion.maxAgeHours of 24.
const CHECKED_AT = new Date(Date.now() - 3_600_000).toISOString();
const REGISTRY_REF = `ghcr.io/example/backend-delivery@${DIGEST}`;
const PUBLIC_KEY = testPublicKey();
const REGISTRY_CONFIG = {
  image: { registry: { server: "ghcr.io", username: "deployer" } },
  registryPassword: "registry-password-for-tests-only",
  promotion: { signing: { publicKey: PUBLIC_KEY } },
};
const SIGNATURE_DIGEST = `sha256:${"5".repeat(64)}`;
const ATTESTATION_DIGEST = `sha256:${"a".repeat(64)}`;
/** What verifyImage answers for a good image: signed, attested, 3 packages. */
const VERIFIED = {
  verified: true,
  image: {
    signatureDigest: SIGNATURE_DIGEST,
    attestationDigest: ATTESTATION_DIGEST,
    packages: [
      { ecosystem: "deb", name: "libc6", version: "2.36-9" },
      { ecosystem: "pypi", name: "fastapi", version: "0.115.0" },
      { ecosystem: "pypi", name: "uvicorn", version: "0.30.0" },
    ],
    publicKeyFingerprint: publicKeyFingerprint(PUBLIC_KEY),
  },
};
const GATE_TYPES = ["backend-delivery:index:PromotionGate"];
const CONTAINER = "docker:index/container:Container";
/** What prod deploys once the gate approves: the same service as staging (proxy, release, check, route, image retention), no image build. */
const PROD_TYPES = [
  "backend-delivery:index:BackendService",
  "backend-delivery:index:HostImage",
  "backend-delivery:index:FrontProxy",
  "docker:index/remoteImage:RemoteImage",
  CONTAINER,
  // The stack's network, and the egress network each release starts on.
  "docker:index/network:Network",
  "docker:index/network:Network",
  "docker:index/volume:Volume",
  "docker:index/volume:Volume",
  "docker:index/volume:Volume",
  "pulumi-nodejs:dynamic:Resource",
  "pulumi-nodejs:dynamic:Resource",
  "pulumi-nodejs:dynamic:Resource",
  "pulumi-nodejs:dynamic:Resource",
].sort();
const RELEASE = "pulumi-nodejs:dynamic:Resource";

let mocks: RecordingMocks;

/**
 * A prod stack whose gate reads `stacks`; secrets stored encrypted the way `--secret` stores them.
 * `secretOutputs` marks outputs of a referenced stack as secret.
 */
async function prodStack(
  stacks: Record<string, Record<string, unknown>>,
  extraConfig: Record<string, unknown> = {},
  options: { preview?: boolean; secretOutputs?: Record<string, string[]>; otherConfig?: Record<string, string> } = {},
): Promise<void> {
  const config: Record<string, unknown> = {
    environment: "prod",
    service: { hostPort: 8081 },
    proxy: { tls: { mode: "upstream" } },
    secrets: {
      DATABASE_URL: canaryDatabaseUrl("prod-canary-pw"),
      SECRET_KEY: "prod-canary-key-5b1e-0123456789abcdef012345",
    },
    ...extraConfig,
  };
  const encrypted = ["secrets.DATABASE_URL", "secrets.SECRET_KEY"];
  if (extraConfig.registryPassword !== undefined) encrypted.push("registryPassword");
  ({ mocks } = await setUpStack({
    stack: STACK,
    config,
    encrypted,
    preview: options.preview ?? false,
    ...(options.otherConfig === undefined ? {} : { otherConfig: options.otherConfig }),
    mocks: { stacks, ...(options.secretOutputs === undefined ? {} : { secretOutputNames: options.secretOutputs }) },
  }));
}

/** The inputs of the release container. */
function releaseOf(): Record<string, unknown> {
  return mocks.byName(`${PROJECT}-${STACK}-release`, RELEASE).inputs;
}

/** Types of every resource registered so far, in order. */
function types(): string[] {
  return mocks.resources.map((r) => r.type);
}

const { hardening, readiness, outputs: stagingOutputs } = stagingRecord({ digest: DIGEST, checkedAt: CHECKED_AT, version: "1.2.3" });

/**
 * Runs the program's async entry and returns its stack outputs, once every registration it started
 * has reached the mock engine (so nothing of one test lands in the next one's engine).
 */
async function runProgram(): Promise<Record<string, unknown>> {
  vi.resetModules();
  const program = (await import("../index")) as unknown as { default: () => Promise<Record<string, unknown>> };
  try {
    return await program.default();
  } finally {
    await settleRegistrations();
  }
}

/** The error the program fails with. */
async function programError(): Promise<Error> {
  const error = await runProgram().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(Error);
  return error as Error;
}

let warn: ReturnType<typeof vi.spyOn>;
let info: ReturnType<typeof vi.spyOn>;
beforeEach(() => {
  registry.calls.length = 0;
  signature.calls.length = 0;
  signature.answer = VERIFIED;
  delete registry.refuse.message;
  warn = vi.spyOn(pulumi.log, "warn").mockImplementation(() => Promise.resolve());
  info = vi.spyOn(pulumi.log, "info").mockImplementation(() => Promise.resolve());
});
afterEach(() => {
  warn.mockRestore();
  info.mockRestore();
});

/** The verdict the gate logged, read back the way the pull-request comment reads it. */
function loggedVerdict(): PromotionVerdict | undefined {
  return readVerdict(info.mock.calls.map((call: unknown[]) => String(call[0])));
}

/**
 * Asserts the message holds a reason written `- <output>: <problem>` here, in the refusal format
 * every refusal uses: `✖ <problem>` then `→ at <output>`.
 */
function expectReason(message: string, expected: string): void {
  const match = /^- ([\w.]+): (.*)$/s.exec(expected);
  if (match === null) {
    expect(message).toContain(expected);
    return;
  }
  const [, output, problem] = match as unknown as [string, string, string];
  expect(message).toMatch(new RegExp(`✖ ${problem.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}[^\n]*\n  → at ${output.replace(/\./g, "\\.")}\n`));
}

describe("prod: a valid staging record is promoted", () => {
  it.each([false, true])("runs exactly staging's imageRef (preview = %s)", async (preview) => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: { imageRef: OLD_DIGEST } }, {}, { preview });
    const outputs = await runProgram();

    expect(outputs.imageRef).toBe(DIGEST);
    expect(outputs.imageDigest).toBe(DIGEST);
    expect(outputs.environment).toBe("prod");
    expect(outputs.previousImageRef).toBe(OLD_DIGEST);
    expect(outputs.promotedFrom).toEqual({ stack: STAGING, imageDigest: DIGEST, checkedAt: CHECKED_AT });
    expect(outputs.promotionOverride).toBeUndefined();

    const gate = mocks.resources.slice(0, 1);
    expect(gate.map((r) => r.type)).toEqual(GATE_TYPES);
    expect(gate.map((r) => r.name)).toEqual([`${PROJECT}-${STACK}-promotion`]);
    // Staging's outputs and this stack's own last ones, read without a resource in state.
    expect([...mocks.reads].sort()).toEqual([STAGING, SELF].sort());

    expect(types().slice(1).sort()).toEqual(PROD_TYPES);
    // The one container of the Docker provider is the proxy; the release runs exactly staging's image.
    expect(mocks.ofType(CONTAINER).map((c) => c.name)).toEqual([`${PROJECT}-${STACK}-proxy`]);
    expect(releaseOf().image).toBe(DIGEST);
    expect(mocks.byName(`${PROJECT}-${STACK}-readiness`).inputs.imageDigest).toBe(DIGEST);
    // What the release's metrics report as the digest it runs (an image cannot know its own).
    expect((asSeenByEngine(releaseOf().env).value as string[]).filter((e) => e.startsWith("IMAGE_DIGEST="))).toEqual([`IMAGE_DIGEST=${DIGEST}`]);
    expect(mocks.resources.some((r) => r.type.startsWith("docker:index/image") || r.type === "docker-build:index:Image")).toBe(false);
    expect(warn).not.toHaveBeenCalled();
    expect(loggedVerdict()).toEqual({
      allowed: true,
      fromStack: STAGING,
      imageRef: DIGEST,
      imageDigest: DIGEST,
      checkedAt: CHECKED_AT,
      supplyChain: { status: "unsigned", reason: UNSIGNED_WITHOUT_REGISTRY },
      currentImageRef: OLD_DIGEST,
    });
    // Without a registry there is nothing to verify: said so, not asked of cosign.
    expect(outputs.supplyChain).toEqual({ status: "unsigned", reason: UNSIGNED_WITHOUT_REGISTRY });
    expect(signature.calls).toEqual([]);
  });

  it("leaves previousImageRef out on the first deploy: no key at all, so the engine has nothing to warn about", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: {} });
    const outputs = await runProgram();
    expect(Object.keys(outputs)).not.toContain("previousImageRef");
    expect(outputs.imageRef).toBe(DIGEST);
  });

  it("keeps the rollback target when an update keeps the image (a rerun, a secret rotation)", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: { imageRef: DIGEST, previousImageRef: OLD_DIGEST } });
    const outputs = await runProgram();
    expect(outputs.imageRef).toBe(DIGEST);
    expect(outputs.previousImageRef).toBe(OLD_DIGEST);
  });

  it("has no rollback target yet after a rerun of the first image", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: { imageRef: DIGEST } });
    const outputs = await runProgram();
    expect(Object.keys(outputs)).not.toContain("previousImageRef");
  });

  it("promotes a registry image by its pinned reference", async () => {
    await prodStack({ [STAGING]: stagingOutputs({ imageRef: REGISTRY_REF }), [SELF]: {} }, REGISTRY_CONFIG);
    const outputs = await runProgram();
    expect(outputs.imageRef).toBe(REGISTRY_REF);
    // Pulled by digest with prod's own credentials (the password a secret), kept on the host when prod is destroyed.
    const pulled = mocks.byName(`${PROJECT}-${STACK}-image`, RELEASE);
    expect(pulled.inputs).toMatchObject({ imageRef: REGISTRY_REF, server: "ghcr.io", username: "deployer" });
    expect(pulled.inputs.password).toEqual({ [pulumi.runtime.specialSigKey]: pulumi.runtime.specialSecretSig, value: REGISTRY_CONFIG.registryPassword });
    // No provider of its own: a token that changes on every run is no change of any resource.
    expect(mocks.ofType("pulumi:providers:docker").filter((p) => !p.name.startsWith("default"))).toEqual([]);
    // The release runs the pulled image, so it cannot start before the pull finished.
    expect(releaseOf().image).toBe(fakeDigest(`pulled-${REGISTRY_REF}`));
    expect(JSON.stringify(outputs)).not.toContain(REGISTRY_CONFIG.registryPassword);
    // Before the pull: prod's own engine asked the registry, with prod's own credentials, for that digest.
    expect(registry.calls).toEqual([
      { check: "engine", args: [{}, STACK] },
      { check: "pull", args: [{}, REGISTRY_REF, { server: "ghcr.io", username: "deployer", password: REGISTRY_CONFIG.registryPassword }, STACK] },
    ]);
    // The gate verified the signature and SBOM with prod's key and credentials, once, and recorded it.
    expect(signature.calls).toEqual([{ imageRef: REGISTRY_REF, login: { server: "ghcr.io", username: "deployer", password: REGISTRY_CONFIG.registryPassword }, publicKey: PUBLIC_KEY }]);
    const record = {
      status: "verified",
      imageDigest: DIGEST,
      signatureDigest: SIGNATURE_DIGEST,
      attestationDigest: ATTESTATION_DIGEST,
      sbom: { format: "spdx-json", packages: 3 },
      publicKeyFingerprint: publicKeyFingerprint(PUBLIC_KEY),
    };
    expect(outputs.supplyChain).toEqual(record);
    expect(loggedVerdict()).toMatchObject({ allowed: true, imageRef: REGISTRY_REF, supplyChain: record });
  });

  it("a registry that refuses prod's credentials or lost the digest stops prod before any of its resources", async () => {
    await prodStack({ [STAGING]: stagingOutputs({ imageRef: REGISTRY_REF }), [SELF]: {} }, REGISTRY_CONFIG, { otherConfig: { "docker:host": "ssh://deploy@prod.example.com" } });
    registry.refuse.message = "stack prod was not deployed (1 problem); nothing of it changed: registry ghcr.io refused user deployer";
    const error = await programError();
    expect(error.message).toContain("registry ghcr.io refused user deployer");
    expect(error.message).not.toContain(REGISTRY_CONFIG.registryPassword);
    expect(registry.calls.map((c) => [c.check, c.args[0]])).toEqual([
      ["engine", { host: "ssh://deploy@prod.example.com" }],
      ["pull", { host: "ssh://deploy@prod.example.com" }],
    ]);
    // Only the gate ran: nothing of prod was registered.
    expect(types().filter((t) => !GATE_TYPES.includes(t))).toEqual([]);
  });

  it("without a registry nothing asks one", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: {} });
    await runProgram();
    expect(registry.calls.map((c) => c.check)).toEqual(["engine"]);
  });

  it("reads promotion.fromStack from config", async () => {
    const custom = "organization/backend-delivery/staging-eu";
    await prodStack({ [custom]: stagingOutputs(), [SELF]: {} }, { promotion: { fromStack: custom } });
    const outputs = await runProgram();
    expect(outputs.promotedFrom).toEqual({ stack: custom, imageDigest: DIGEST, checkedAt: CHECKED_AT });
  });
});

describe("prod: blocked before any prod resource", () => {
  const cases: Array<[string, Record<string, unknown>, string, Record<string, unknown>?]> = [
    ["environment missing", without(stagingOutputs(), "environment"), "- environment: output `environment` is missing"],
    ["imageRef missing", without(stagingOutputs(), "imageRef"), "- imageRef: output `imageRef` is missing"],
    ["imageDigest missing", without(stagingOutputs(), "imageDigest"), "- imageDigest: output `imageDigest` is missing"],
    ["readiness missing", without(stagingOutputs(), "readiness"), "- readiness: output `readiness` is missing"],
    ["imageRef of the wrong type", stagingOutputs({ imageRef: 7 }), "- imageRef: output `imageRef` is 7 (a number)"],
    ["readiness of the wrong type", stagingOutputs({ readiness: [1] }), "- readiness: output `readiness` is an array"],
    ["ready false", stagingOutputs({ readiness: readiness({ ready: false }) }), "- readiness.ready: `readiness.ready` is false"],
    ["ready null", stagingOutputs({ readiness: readiness({ ready: null }) }), "- readiness.ready: `readiness.ready` is null, not the boolean true"],
    [
      'ready "true"',
      stagingOutputs({ readiness: readiness({ ready: "true" }) }),
      '- readiness.ready: `readiness.ready` is "true" (a string), not the boolean true',
    ],
    [
      "digest mismatch",
      stagingOutputs({ readiness: readiness({ imageDigest: OTHER_DIGEST }) }),
      `- readiness.imageDigest: staging checked ${OTHER_DIGEST}, but \`imageDigest\` is ${DIGEST}`,
    ],
    [
      "unpinned ref with a registry",
      stagingOutputs({ imageRef: "ghcr.io/example/backend-delivery:latest" }),
      "- imageRef: output `imageRef` \"ghcr.io/example/backend-delivery:latest\" (a string) is not pinned by digest",
      REGISTRY_CONFIG,
    ],
    [
      "stale readiness",
      stagingOutputs({ readiness: readiness({ checkedAt: new Date(Date.now() - 25 * 3_600_000).toISOString() }) }),
      "older than promotion.maxAgeHours = 24",
    ],
    [
      "readiness from the future",
      stagingOutputs({ readiness: readiness({ checkedAt: new Date(Date.now() + 3_600_000).toISOString() }) }),
      "in the future (more than the 5 min of clock skew allowed)",
    ],
    [
      "unparsable date",
      stagingOutputs({ readiness: readiness({ checkedAt: "last tuesday" }) }),
      '- readiness.checkedAt: `readiness.checkedAt` is "last tuesday" (a string), expected an ISO-8601 UTC time',
    ],
    ["wrong environment", stagingOutputs({ environment: "prod" }), `- environment: ${STAGING} has environment "prod" (a string), expected "staging"`],
    [
      "root user",
      stagingOutputs({ readiness: readiness({ hardening: hardening({ user: "0" }) }) }),
      '- readiness.hardening.user: staging\'s container ran as "0"',
    ],
    [
      "writable root",
      stagingOutputs({ readiness: readiness({ hardening: hardening({ readOnlyRootFilesystem: false }) }) }),
      "- readiness.hardening.readOnlyRootFilesystem: staging's container had a writable root file system",
    ],
    [
      "capabilities kept",
      stagingOutputs({ readiness: readiness({ hardening: hardening({ capabilitiesDropped: ["NET_RAW"] }) }) }),
      "did not drop ALL capabilities (dropped: NET_RAW)",
    ],
    [
      "new privileges allowed",
      stagingOutputs({ readiness: readiness({ hardening: hardening({ noNewPrivileges: false }) }) }),
      "allowed privilege escalation",
    ],
    [
      "hardening missing",
      stagingOutputs({ readiness: without(readiness(), "hardening") }),
      "- readiness.hardening: `readiness.hardening` is missing",
    ],
  ];

  it.each(cases)("%s", async (_name, outputs, expected, extraConfig) => {
    await prodStack({ [STAGING]: outputs, [SELF]: { imageRef: OLD_DIGEST } }, extraConfig);
    const error = await programError();
    expect(error.message).toContain(`prod promotion from ${STAGING} refused (1 reason); no prod resource was touched:`);
    expectReason(error.message, expected);
    expect(error.message).toMatch(/\n {4}fix: \S/);
    expect(types()).toEqual(GATE_TYPES);
  });

  it("lists every reason at once, each with its fix", async () => {
    const outputs = stagingOutputs({
      readiness: readiness({ ready: false, imageDigest: OTHER_DIGEST, hardening: hardening({ user: "root" }) }),
    });
    await prodStack({ [STAGING]: outputs, [SELF]: {} });
    const error = await programError();
    const lines = error.message.split("\n");
    expect(lines[0]).toBe(`prod promotion from ${STAGING} refused (3 reasons); no prod resource was touched:`);
    expect(lines.filter((l) => l.startsWith("  → at "))).toEqual([
      "  → at readiness.ready",
      "  → at readiness.imageDigest",
      "  → at readiness.hardening.user",
    ]);
    expect(lines.filter((l) => l.startsWith("    fix: "))).toHaveLength(3);
    expect(types()).toEqual(GATE_TYPES);
    // The same reasons, as data, in the verdict line the pull-request comment reads.
    const verdict = loggedVerdict();
    expect(verdict?.allowed).toBe(false);
    expect(verdict?.allowed === false && verdict.reasons.map((r) => r.code)).toEqual(["not-ready", "digest-mismatch", "root-user"]);
    // The engine prints a RunError's message without the program's stack trace.
    expect(error).toBeInstanceOf(pulumi.RunError);
  });

  it("refuses a secret-marked output without printing its value", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: {} }, {}, { secretOutputs: { [STAGING]: ["imageRef"] } });
    const error = await programError();
    expectReason(error.message, "- imageRef: output `imageRef` is marked secret on");
    expect(error.message).not.toContain(DIGEST.slice(7));
    expect(types()).toEqual(GATE_TYPES);
  });

  it("evaluates the gate the same way in preview", async () => {
    await prodStack({ [STAGING]: stagingOutputs({ readiness: readiness({ ready: false }) }), [SELF]: {} }, {}, { preview: true });
    const error = await programError();
    expectReason(error.message, "- readiness.ready: `readiness.ready` is false");
    expect(types()).toEqual(GATE_TYPES);
  });

  it("names a staging stack that does not exist and how to create it", async () => {
    await prodStack({ [SELF]: {} });
    const error = await programError();
    expectReason(error.message, `- promotion.fromStack: staging stack ${STAGING} not found or unreadable (unknown stack "${STAGING}")`);
    expect(error.message).toContain(`pulumi stack init ${STAGING}\` then \`pulumi up --stack ${STAGING}`);
    expect(types()).toEqual(GATE_TYPES);
    const verdict = loggedVerdict();
    expect(verdict?.allowed === false && verdict.reasons.map((r) => r.code)).toEqual(["stack-not-found"]);
  });
});

describe("prod: break-glass override", () => {
  const override = { reason: "INC-42: staging host down, hotfix verified by hand", approvedBy: "alice" };

  it("lets a blocked promotion through, records it and warns loudly", async () => {
    await prodStack({ [STAGING]: stagingOutputs({ readiness: readiness({ ready: false }) }), [SELF]: {} }, { promotion: { override } });
    const outputs = await runProgram();
    expect(outputs.imageRef).toBe(DIGEST);
    expect(await awaitOutput(outputs.promotionOverride as pulumi.Input<unknown>)).toEqual(override);
    expect(warn).toHaveBeenCalledTimes(1);
    const [message] = warn.mock.calls[0] as [string];
    expect(message).toContain(`PROMOTION OVERRIDE: prod takes ${DIGEST} from ${STAGING} although the gate refused it`);
    expect(message).toContain('approved by "alice" because "INC-42: staging host down, hotfix verified by hand"');
    expectReason(message, "- readiness.ready: `readiness.ready` is false");
    expect(releaseOf().image).toBe(DIGEST);
  });

  it.each([
    ["approvedBy missing", { reason: "INC-42" }, "promotion.override.approvedBy"],
    ["reason empty", { reason: " ", approvedBy: "alice" }, "promotion.override.reason"],
  ])("refuses an override with %s, before any resource", async (_name, partial, key) => {
    await prodStack({ [STAGING]: stagingOutputs({ readiness: readiness({ ready: false }) }), [SELF]: {} }, { promotion: { override: partial } });
    const error = await programError();
    expect(error.message).toContain(key);
    expect(mocks.resources).toEqual([]);
  });

  it("cannot lift a missing image reference", async () => {
    await prodStack({ [STAGING]: without(stagingOutputs(), "imageRef"), [SELF]: {} }, { promotion: { override } });
    const error = await programError();
    expectReason(error.message, "- imageRef: output `imageRef` is missing");
    expect(error.message).toContain("promotion.override cannot lift: imageRef");
    expect(types()).toEqual(GATE_TYPES);
    expect(warn).not.toHaveBeenCalled();
  });

  it("warns that an unneeded override should be removed, and does not record it", async () => {
    await prodStack({ [STAGING]: stagingOutputs(), [SELF]: {} }, { promotion: { override } });
    const outputs = await runProgram();
    expect(outputs.promotionOverride).toBeUndefined();
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0]?.[0])).toContain("promotion.override is set but not needed");
  });
});

describe("prod: the image's signature and SBOM, verified in the registry before any prod resource", () => {
  const registryStaging = () => ({ [STAGING]: stagingOutputs({ imageRef: REGISTRY_REF }), [SELF]: { imageRef: `ghcr.io/example/backend-delivery@${OLD_DIGEST}` } });
  const refusal = (code: string, problem: string) => ({ verified: false, problems: [{ code, problem }] });

  it.each([
    ["unsigned", `the registry holds no signature for ${DIGEST}`, "supplyChain.signature", "npm run signing -- init"],
    ["signed-by-other-key", `${DIGEST} is signed, but its 1 signature does not verify with promotion.signing.publicKey: signed by another key`, "supplyChain.signature", "npm run signing -- init --force"],
    ["signature-other-digest", `the signature stored for ${DIGEST} was made with this key for another image (${OTHER_DIGEST})`, "supplyChain.signature", `pulumi up --refresh --stack ${STAGING}`],
    ["sbom-missing", `the registry holds no SPDX SBOM attestation for ${DIGEST}`, "supplyChain.sbom", `pulumi up --refresh --stack ${STAGING}`],
    ["sbom-invalid", `the SBOM attestation of ${DIGEST} does not verify with promotion.signing.publicKey: changed after it was signed, or signed by another key`, "supplyChain.sbom", `pulumi up --refresh --stack ${STAGING}`],
    ["sbom-other-digest", `the SBOM attestation stored for ${DIGEST} is about another image (${OTHER_DIGEST})`, "supplyChain.sbom", `pulumi up --refresh --stack ${STAGING}`],
  ])("%s: refused with its reason and fix, nothing of prod registered", async (code, problem, output, fix) => {
    signature.answer = refusal(code, problem);
    await prodStack(registryStaging(), REGISTRY_CONFIG);
    const error = await programError();
    expect(error.message).toMatch(/^prod promotion from .* refused \(1 reason\); no prod resource was touched:/);
    expectReason(error.message, `- ${output}: ${problem}`);
    expect(error.message).toContain(fix);
    expect(types()).toEqual(GATE_TYPES);
    // The registry was asked for the digest (with prod's credentials) before its signature was checked.
    expect(registry.calls.map((c) => c.check)).toEqual(["engine", "pull"]);
    const verdict = loggedVerdict();
    expect(verdict).toMatchObject({ allowed: false, imageRef: REGISTRY_REF, currentImageRef: `ghcr.io/example/backend-delivery@${OLD_DIGEST}` });
    expect(verdict?.allowed === false && verdict.reasons.map((r) => [r.code, r.output, r.overridable])).toEqual([[code, output, true]]);
  });

  it("lists a signature problem with every other reason, in output order", async () => {
    signature.answer = { verified: false, problems: [{ code: "unsigned", problem: "no signature" }, { code: "sbom-missing", problem: "no SBOM" }] };
    await prodStack({ [STAGING]: stagingOutputs({ imageRef: REGISTRY_REF, readiness: readiness({ ready: false }) }), [SELF]: {} }, REGISTRY_CONFIG);
    const error = await programError();
    expect(error.message).toContain("refused (3 reasons)");
    const verdict = loggedVerdict();
    expect(verdict?.allowed === false && verdict.reasons.map((r) => r.output)).toEqual(["readiness.ready", "supplyChain.signature", "supplyChain.sbom"]);
  });

  it("a check that cannot run at all (cosign missing) refuses: fail closed", async () => {
    signature.answer = new Error("cosign is not installed: install cosign and put it on PATH");
    await prodStack(registryStaging(), REGISTRY_CONFIG);
    const error = await programError();
    expectReason(error.message, `- supplyChain.signature: the signature of ${REGISTRY_REF} could not be checked: cosign is not installed`);
    expect(types()).toEqual(GATE_TYPES);
  });

  it("verifies in a preview too, so the pull request shows the verdict", async () => {
    signature.answer = refusal("unsigned", "no signature");
    await prodStack(registryStaging(), REGISTRY_CONFIG, { preview: true });
    await programError();
    expect(signature.calls.map((c) => c.imageRef)).toEqual([REGISTRY_REF]);
  });

  it("does not verify an image reference that is not pinned: that is its own reason", async () => {
    await prodStack({ [STAGING]: stagingOutputs({ imageRef: "ghcr.io/example/backend-delivery:latest" }), [SELF]: {} }, REGISTRY_CONFIG);
    await programError();
    expect(signature.calls).toEqual([]);
  });

  it("a recorded override lifts a signature reason, loudly, and prod records that it was not verified", async () => {
    signature.answer = refusal("signed-by-other-key", "signed by another key");
    const override = { reason: "INC-7: key rotation half done", approvedBy: "alice" };
    await prodStack(registryStaging(), { ...REGISTRY_CONFIG, promotion: { ...REGISTRY_CONFIG.promotion, override } });
    const outputs = await runProgram();
    expect(outputs.imageRef).toBe(REGISTRY_REF);
    expect(outputs.promotionOverride).toEqual(override);
    expect(outputs.supplyChain).toEqual({ status: "not-verified", reason: "promotion.override lifted: signed-by-other-key" });
    expect(String(warn.mock.calls[0]?.[0])).toContain("PROMOTION OVERRIDE");
    expect(loggedVerdict()).toMatchObject({ allowed: true, override, supplyChain: { status: "not-verified" } });
  });
});
