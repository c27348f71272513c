/**
 * `npm run status`: the screen and the JSON from a stack's outputs, its host's view and its drift
 * record (pure), and the command itself against a stand-in `pulumi` and this machine's Docker engine
 * (which holds nothing of the made-up stack). The real thing is test/operations.e2e.test.ts.
 */
import * as fs from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { renderStatus, stackStatus, swarmRetentionRecord, type HostView } from "../scripts/lib/status";
import { createFakePulumi, makeProjectDirWithLocalState, runScript, type FakePulumi } from "../support/fakePulumi";
import { stagingRecord } from "../support/stagingRecord";

const NOW = new Date("2030-01-10T12:00:00.000Z");
const DIGEST = `sha256:${"d".repeat(64)}`;
const PREVIOUS = `sha256:${"c".repeat(64)}`;
const { outputs: record } = stagingRecord({ digest: DIGEST, checkedAt: "2030-01-10T11:00:00.000Z", version: "1.2.3" });
const host: HostView = {
  reachable: true,
  releases: [
    { name: "bd-prod-app-aaaaaa", state: "running", startedAt: "2030-01-09T12:00:00.000Z", image: DIGEST },
    { name: "bd-prod-app-bbbbbb", state: "restarting", startedAt: "2030-01-10T11:59:00.000Z", image: PREVIOUS },
  ],
  keptImages: [
    { id: DIGEST, created: "2030-01-09T10:00:00.000Z" },
    { id: PREVIOUS, created: "2030-01-08T10:00:00.000Z" },
  ],
};
const prodOutputs = () => ({
  ...record(),
  environment: "prod",
  url: "https://api.example.com",
  previousImageRef: PREVIOUS,
  promotedFrom: { stack: "organization/backend-delivery/staging", imageDigest: DIGEST, checkedAt: "2030-01-10T11:00:00.000Z" },
  tls: { mode: "acme", domain: "api.example.com", notAfter: "2030-03-01T00:00:00.000Z", issuer: "CN=R11, O=Let's Encrypt, C=US", fingerprint: Array(32).fill("AB").join(":") },
});

describe("stackStatus and renderStatus", () => {
  it("says what runs where: digest and since when (the running release), rollback target, promotion, TLS, images, drift", () => {
    const s = stackStatus("prod", prodOutputs(), host, { status: "drift", checkedAt: "2030-01-10T06:00:00.000Z", changes: 2 }, NOW);
    expect(s).toMatchObject({
      stack: "prod",
      environment: "prod",
      serving: { imageDigest: DIGEST, since: "2030-01-09T12:00:00.000Z", release: "bd-prod-app-aaaaaa" },
      readiness: { ready: true, checkedAt: "2030-01-10T11:00:00.000Z", version: "1.2.3" },
      rollbackTarget: PREVIOUS,
      tls: { mode: "acme", issuer: "CN=R11, O=Let's Encrypt, C=US", notAfter: "2030-03-01T00:00:00.000Z", daysLeft: 49 },
      problems: [],
    });
    expect(renderStatus(s, NOW)).toEqual([
      "Stack prod (prod)",
      `  Serving:       ${DIGEST} since 2030-01-09T12:00:00.000Z (24 h ago)`,
      "  Release:       bd-prod-app-aaaaaa",
      "  URL:           https://api.example.com",
      "  Readiness:     ready, checked 2030-01-10T11:00:00.000Z (60 min ago), version 1.2.3",
      `  Rollback to:   ${PREVIOUS}`,
      "  Promoted from: organization/backend-delivery/staging, its check at 2030-01-10T11:00:00.000Z",
      "  TLS:           acme, certificate from CN=R11, O=Let's Encrypt, C=US valid until 2030-03-01T00:00:00.000Z (49 days left)",
      `  Images kept:   2: ${"d".repeat(12)}, ${"c".repeat(12)}`,
      "  Drift:         DRIFT in 2 resource(s), checked 2030-01-10T06:00:00.000Z (6 h ago)",
    ]);
  });

  it("a Swarm stack shows its replicas; an unreachable host says why; no drift check yet says how", () => {
    const swarm = stackStatus("staging", { ...record(), environment: "staging" }, { ...host, replicas: { running: 2, desired: 3 } }, undefined, NOW);
    expect(renderStatus(swarm, NOW)).toContain("  Replicas:      2/3 running");
    expect(renderStatus(swarm, NOW)).toContain("  Drift:         never checked (npm run drift -- <stack>)");
    const down = stackStatus("staging", record(), { reachable: false, error: "connect ECONNREFUSED /var/run/docker.sock" }, undefined, NOW);
    expect(renderStatus(down, NOW)).toContain("  Docker host:   did not answer: connect ECONNREFUSED /var/run/docker.sock");
    expect(down.serving?.since).toBeUndefined();
  });

  it("a Swarm stack shows what image retention kept on each node, from its record in the state", () => {
    const exported = {
      version: 3,
      deployment: {
        resources: [
          { urn: "urn:pulumi:staging::bd::pulumi:providers:docker::default", outputs: {} },
          {
            urn: "urn:pulumi:staging::bd::backend-delivery:index:SwarmService$pulumi-nodejs:dynamic:Resource::bd-staging-images",
            outputs: { nodes: [{ node: "q8065jf6t5hbkl25hxi8w4uxg", kept: [DIGEST, PREVIOUS], removed: [`sha256:${"e".repeat(64)}`], held: [] }, { node: "l57btqbh556d8d9ktl46v5q9x", kept: [DIGEST], removed: [], held: [] }] },
          },
        ],
      },
    };
    const nodes = swarmRetentionRecord(exported, "bd", "staging");
    expect(nodes).toEqual([
      { node: "q8065jf6t5hbkl25hxi8w4uxg", kept: [DIGEST, PREVIOUS], removed: [`sha256:${"e".repeat(64)}`] },
      { node: "l57btqbh556d8d9ktl46v5q9x", kept: [DIGEST], removed: [] },
    ]);
    const lines = renderStatus(stackStatus("staging", { ...record(), environment: "staging" }, { ...host, replicas: { running: 3, desired: 3 } }, undefined, NOW, nodes), NOW);
    expect(lines.slice(lines.findIndex((l) => l.startsWith("  Images kept:")), -1)).toEqual([
      `  Images kept:   2: ${"d".repeat(12)}, ${"c".repeat(12)}`,
      `  On each node:  q8065jf6t5hb: 2: ${"d".repeat(12)}, ${"c".repeat(12)} (the last run removed 1)`,
      `                 l57btqbh556d: 1: ${"d".repeat(12)}`,
    ]);
    // A single-host stack, or a record of another shape: none.
    expect(swarmRetentionRecord({ deployment: { resources: [{ urn: "urn:...::bd-staging-images", outputs: { kept: [], removed: [] } }] } }, "bd", "staging")).toBeUndefined();
    expect(swarmRetentionRecord({}, "bd", "staging")).toBeUndefined();
  });

  it("a stack never deployed, or outputs out of shape, is said so without showing them", () => {
    const none = stackStatus("dev", {}, host, undefined, NOW);
    expect(renderStatus(none, NOW)[1]).toBe("  Serving:       nothing recorded: the stack has no imageRef output (deploy it first)");
    const bad = stackStatus("dev", { ...record(), imageDigest: "not-a-digest-canary-77" }, host, undefined, NOW);
    expect(bad.problems).toEqual(["imageDigest"]);
    expect(renderStatus(bad, NOW).join("\n")).not.toContain("canary-77");
  });
});

describe("npm run status (stand-in pulumi)", () => {
  let fake: FakePulumi | undefined;
  let dir: string;
  beforeEach(() => {
    dir = makeProjectDirWithLocalState();
  });
  afterEach(() => {
    fake?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ["no stack", 2, [], "Name exactly one stack."],
    ["an unknown option", 2, ["staging", "--all"], "Unknown option '--all'"],
    ["a stack that does not exist", 3, ["nope"], "Stack nope does not exist in this backend."],
  ])("%s: exit %i", async (_name, code, args, message) => {
    fake = createFakePulumi({ stacks: { staging: {} } });
    const r = await runScript("status", args as string[], { fake, projectDir: dir });
    expect(r.code).toBe(code);
    expect(r.stderr).toContain(message);
  });
});
