/**
 * TLS at the front proxy on the Swarm target, under Pulumi's mocks: what each mode gives the proxy
 * (ports) and the proxy's configuration (its TLS input, secret where it holds the key; after the
 * rollout check), the tasks (the domain an accepted host), the `url` and `tls` outputs, the status
 * line the pull-request comment reads (the look through the proxy at the program's start made from
 * a probe on the stack's network), and prod's gate holding the certificate against
 * promotion.minCertificateDays, exactly as on one host (test/tlsProgram.test.ts); then the proxy
 * configuration's own decisions: when to load again, when only to look again, which answer counts.
 * test/swarm.e2e.test.ts proves it on a real swarm.
 */
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { Observation } from "../components/proxy/observe";
import { factsOfDer } from "../components/proxy/certificates";
import { answeringRelease } from "../components/proxy/reload";
import { readTlsStatus } from "../components/proxy/tlsStatus";
import { configurationChanged, swarmProxyConfigProvider, type SwarmProxyConfigInputs } from "../components/swarm/proxyConfig";
import { canaryDatabaseUrl } from "../support/canary";
import { asSeenByEngine, PROJECT, removeStackFiles, settle, setUpStack, stagingSetup, type RecordingMocks, type StackSetup } from "../support/mocks";
import { stagingRecord } from "../support/stagingRecord";
import { spyOnInfoLog } from "../support/programLog";
import { programCertificates, type ProgramCertificates } from "../support/throwawayCa";

afterAll(removeStackFiles);

const registryChecks = vi.hoisted(() => [] as unknown[]);
vi.mock("../components/docker/preflight", async (importOriginal) => (await import("../support/mocks")).recordingPreflight(importOriginal, registryChecks as never));
vi.mock("../components/swarm/preflight", async (importOriginal) => ({ ...(await importOriginal<Record<string, unknown>>()), checkSwarmManager: async () => undefined }));
// Both targets' looks through the proxy at the program's start: which one the program made, and with what.
const look = vi.hoisted(() => ({ observation: undefined as Observation | undefined, calls: [] as { target: string; args: unknown }[] }));
vi.mock("../components/proxy/observe", async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()),
  observeServedCertificate: async (args: unknown) => {
    look.calls.push({ target: "container", args });
    return look.observation ?? { unobserved: "no release of this stack runs yet", at: new Date().toISOString() };
  },
}));
vi.mock("../components/swarm/observe", () => ({
  observeSwarmServedCertificate: async (args: unknown) => {
    look.calls.push({ target: "swarm", args });
    return look.observation ?? { unobserved: "no release of this stack runs yet", at: new Date().toISOString() };
  },
}));

const DOMAIN = "api.example.test";
const S = "backend-delivery-staging";
const DYNAMIC = "pulumi-nodejs:dynamic:Resource";
const CONTAINER = "docker:index/container:Container";
/** Chains (PEM) and keys, and the DER of their leaves, valid for 30 and for 3 days. */
const made: ProgramCertificates = { chain: "", key: "", der: "", shortChain: "", shortKey: "", shortDer: "", otherDer: "" };

beforeAll(async () => void Object.assign(made, await programCertificates("swarm tls tests", DOMAIN)), 60_000);

const logged = spyOnInfoLog();
beforeEach(() => void Object.assign(look, { observation: undefined, calls: [] }));
afterEach(() => void delete process.env.BACKEND_DELIVERY_STACK_FILE);

type Outputs = Record<string, unknown>;
/** The mocks of the latest run, also when the program threw. */
let latest: RecordingMocks | undefined;
async function run(setup: StackSetup): Promise<{ mocks: RecordingMocks; outputs: Outputs }> {
  const { mocks } = await setUpStack(setup);
  latest = mocks;
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Record<string, pulumi.Output<unknown>>>;
  return { mocks, outputs: await settle(await program()) };
}

/** A Swarm staging stack with these proxy settings; `extra` at the top level. */
function staging(proxy: Record<string, unknown>, extra: Record<string, unknown> = {}, options: Partial<StackSetup> = {}): StackSetup {
  const setup = stagingSetup();
  setup.config.service = { hostPort: 8080, env: { LOG_LEVEL: "info" }, orchestrator: "swarm" };
  setup.config.secrets = { DATABASE_URL: canaryDatabaseUrl("canary-pg-7f3a"), SECRET_KEY: "canary-secret-key-7f3a-0123456789abcdef0123" };
  Object.assign(setup.config, { proxy, ...extra });
  if (extra.tlsPrivateKey !== undefined) setup.encrypted = [...setup.encrypted!, "tlsPrivateKey"];
  return { ...setup, ...options, mocks: { servedCertificate: made.der, ...options.mocks } };
}

const loggedStatus = () => readTlsStatus(logged());
/** The plain settings the tasks read (their Swarm config). */
const settingsText = (mocks: RecordingMocks) => Buffer.from(String(mocks.ofType("docker:index/serviceConfig:ServiceConfig")[0]!.inputs.data), "base64").toString("utf8");
const proxyConfigOf = (mocks: RecordingMocks) => mocks.byName(`${S}-proxy-config`, DYNAMIC).inputs;

describe("a Swarm stack with TLS at the proxy", () => {
  it("certificate: both ports published on every interface, the key only in the proxy configuration's secret TLS input, url and tls say what is served", async () => {
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "certificate", certificate: made.chain } }, { tlsPrivateKey: made.key }));
    expect(mocks.byName(`${S}-proxy`, CONTAINER).inputs.ports).toEqual([
      { internal: 8080, external: 8080, ip: "0.0.0.0", protocol: "tcp" },
      { internal: 8443, external: 8443, ip: "0.0.0.0", protocol: "tcp" },
    ]);
    const config = proxyConfigOf(mocks);
    expect(asSeenByEngine(config.tls)).toEqual({ secret: true, value: { mode: "certificate", domain: DOMAIN, httpsPort: 8443, certificate: made.chain, privateKey: made.key } });
    expect(config).toMatchObject({ proxyUser: "10002:10002", tlsTimeoutSeconds: 120, hostHeader: "127.0.0.1", proxyContainer: `${S}-proxy` });
    // The tasks accept the domain as Host (and the probes' loopback address).
    expect(settingsText(mocks)).toContain(`ALLOWED_HOSTS="${DOMAIN},127.0.0.1"`);
    expect(outputs.url).toBe(`https://${DOMAIN}:8443`);
    const facts = factsOfDer(made.der);
    expect(outputs.tls).toEqual({ mode: "certificate", domain: DOMAIN, issuer: facts.issuer, notAfter: facts.notAfter, fingerprint: facts.fingerprint });
    expect(outputs.readiness).toMatchObject({ ready: true, replicas: { desired: 2, ready: 2 } });
    // Nothing of the key anywhere but that input: not the service, its settings, an output or a log line.
    const service = JSON.stringify(mocks.byName(`${S}-service`, "docker:index/service:Service").inputs);
    const everything = JSON.stringify([outputs, logged(), service, settingsText(mocks), mocks.byName(`${S}-proxy`, CONTAINER).inputs]);
    for (const line of made.key.split("\n").filter((l) => !l.startsWith("-----"))) expect(everything).not.toContain(line);
    expect(loggedStatus()?.configured?.fingerprint).toBe(facts.fingerprint);
  });

  it("acme: the proxy configuration gets the ACME settings; the program looked through the proxy from the stack's network, and logged it", async () => {
    const acme = { directory: "https://acme.example.test/dir", email: "ops@example.test" };
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, httpsPort: 443, tls: { mode: "acme", acme } }, { service: { hostPort: 80, orchestrator: "swarm", env: { LOG_LEVEL: "info" } } }));
    expect(asSeenByEngine(proxyConfigOf(mocks).tls)).toEqual({ secret: false, value: { mode: "acme", domain: DOMAIN, httpsPort: 443, acme } });
    expect(mocks.byName(`${S}-proxy`, CONTAINER).inputs.ports).toEqual([
      { internal: 8080, external: 80, ip: "0.0.0.0", protocol: "tcp" },
      { internal: 8443, external: 443, ip: "0.0.0.0", protocol: "tcp" },
    ]);
    expect(outputs.url).toBe(`https://${DOMAIN}`);
    expect(look.calls).toHaveLength(1);
    const rollout = mocks.byName(`${S}-rollout`, DYNAMIC).inputs;
    // A probe container of the stack's: its service, its overlay network, the probe's confinement.
    expect(look.calls[0]).toEqual({
      target: "swarm",
      args: {
        endpoint: {},
        proxyContainer: `${S}-proxy`,
        domain: DOMAIN,
        service: `${S}-app`,
        network: `${S}-network`,
        user: rollout.user,
        hostConfig: rollout.hostConfig,
        labels: rollout.labels,
      },
    });
    expect(loggedStatus()).toMatchObject({ mode: "acme", domain: DOMAIN, unobserved: "no release of this stack runs yet" });
  });

  it("an update that does not load the proxy again records what it served at the program's start; one that does, what its look saw", async () => {
    const other = { der: made.shortDer, at: new Date().toISOString() };
    look.observation = other;
    const kept = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "internal" } }, {}, { mocks: { switchedAt: "2000-01-01T00:00:00.000Z" } }));
    expect((kept.outputs.tls as { fingerprint: string }).fingerprint).toBe(factsOfDer(made.shortDer).fingerprint);
    expect(loggedStatus()?.served?.fingerprint).toBe(factsOfDer(made.shortDer).fingerprint);
    const looked = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "internal" } }));
    expect((looked.outputs.tls as { fingerprint: string }).fingerprint).toBe(factsOfDer(made.der).fingerprint);
  });

  it("upstream: plain HTTP on the manager's loopback, no TLS input, url the public name, and the tasks accept that name", async () => {
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, tls: { mode: "upstream" } }));
    expect(mocks.byName(`${S}-proxy`, CONTAINER).inputs.ports).toEqual([{ internal: 8080, external: 8080, ip: "127.0.0.1", protocol: "tcp" }]);
    expect(proxyConfigOf(mocks).tls).toBeUndefined();
    expect(settingsText(mocks)).toContain(`ALLOWED_HOSTS="${DOMAIN},127.0.0.1"`);
    expect([outputs.url, outputs.tls]).toEqual([`https://${DOMAIN}`, { mode: "upstream", domain: DOMAIN }]);
    expect(look.calls).toEqual([]);
  });
});

describe("prod's gate and the certificate of a Swarm stack", () => {
  const STAGING = `organization/${PROJECT}/staging`;
  const { outputs: stagingOutputs } = stagingRecord({ digest: `sha256:${"d".repeat(64)}`, checkedAt: new Date(Date.now() - 3_600_000).toISOString(), version: "1.2.3" });
  const prod = (proxy: Record<string, unknown>, extra: Record<string, unknown> = {}): StackSetup => ({
    stack: "prod",
    config: {
      environment: "prod",
      service: { hostPort: 80, orchestrator: "swarm", replicas: 3 },
      proxy,
      secrets: { DATABASE_URL: canaryDatabaseUrl("prod-canary-pw"), SECRET_KEY: "prod-canary-key-5b1e-0123456789abcdef012345" },
      ...extra,
    },
    encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY", ...(extra.tlsPrivateKey === undefined ? [] : ["tlsPrivateKey"])],
    mocks: { stacks: { [STAGING]: stagingOutputs() }, servedCertificate: made.der },
  });
  const refusal = async (setup: StackSetup): Promise<{ message: string; mocks: RecordingMocks }> => {
    const error = await run(setup).then(() => undefined, (e: unknown) => e as Error);
    expect(error).toBeInstanceOf(pulumi.RunError);
    return { message: error!.message, mocks: latest! };
  };

  it("acme: refuses while the certificate the Swarm proxy serves is about to expire, before anything of prod is registered", async () => {
    look.observation = { der: made.shortDer, at: new Date().toISOString() };
    const { message, mocks } = await refusal(prod({ domain: DOMAIN, tls: { mode: "acme" } }));
    expect(message).toMatch(/✖ the certificate prod's proxy serves expires in [23]\.\d days .*Caddy has not managed to renew it\n {2}→ at tls\.notAfter\n/);
    expect(message).toContain("`docker logs backend-delivery-prod-proxy`");
    expect(look.calls.map((c) => c.target)).toEqual(["swarm"]);
    // The gate itself, and nothing of the Swarm target.
    expect(mocks.resources.map((r) => r.type)).toEqual(["backend-delivery:index:PromotionGate"]);
  });

  it("certificate: refuses a chain that expires within promotion.minCertificateDays, naming the commands that replace it", async () => {
    const { message } = await refusal(prod({ domain: DOMAIN, tls: { mode: "certificate", certificate: made.shortChain } }, { tlsPrivateKey: made.shortKey }));
    expect(message).toContain("the certificate prod is given in proxy.tls.certificate expires in");
    expect(message).toContain("`pulumi config set --stack prod --secret tlsPrivateKey < privkey.pem`");
  });

  it("a certificate with time left goes through: prod runs staging's digest over HTTPS", async () => {
    look.observation = { der: made.der, at: new Date().toISOString() };
    const { mocks, outputs } = await run(prod({ domain: DOMAIN, tls: { mode: "acme" } }));
    expect(outputs.url).toBe(`https://${DOMAIN}`);
    expect((outputs.tls as { fingerprint: string }).fingerprint).toBe(factsOfDer(made.der).fingerprint);
    expect(mocks.byName("backend-delivery-prod-service", "docker:index/service:Service").inputs).toMatchObject({ mode: { replicated: { replicas: 3 } } });
  });
});

describe("the Swarm proxy configuration's decisions", () => {
  const probe = { image: "img", network: "s-network", user: "10001:10001", hostConfig: {} as SwarmProxyConfigInputs["probe"]["hostConfig"], labels: {} };
  const tls = { mode: "certificate", domain: DOMAIN, httpsPort: 443, certificate: "chain", privateKey: "key" } as const;
  const base: SwarmProxyConfigInputs = {
    proxyContainer: "p", proxyContainerId: "pid", service: "s-app", port: 8000, hsts: true, hostHeader: "127.0.0.1",
    release: "img secrets config", readyAt: "2030-01-01T00:00:00.000Z", probe, tls, proxyUser: "10002:10002", tlsTimeoutSeconds: 120,
  };
  const diff = (news: Partial<SwarmProxyConfigInputs>) => swarmProxyConfigProvider.diff!("id", { ...base, configuredAt: base.readyAt }, { ...base, ...news });

  it("loads again for a new proxy container, certificate, key or mode, not for the same settings in another key order or a new timeout", async () => {
    expect(await diff({})).toEqual({ changes: false, replaces: [] });
    const reordered = { privateKey: "key", certificate: "chain", httpsPort: 443, domain: DOMAIN, mode: "certificate" as const };
    expect(await diff({ tls: reordered, tlsTimeoutSeconds: 300 })).toEqual({ changes: false, replaces: [] });
    for (const news of [{ proxyContainerId: "new" }, { tls: { ...tls, privateKey: "other" } }, { tls: { mode: "internal" as const, domain: DOMAIN, httpsPort: 443 } }, { tls: undefined }]) {
      expect(configurationChanged(base, { ...base, ...news })).toBe(true);
      expect(await diff(news)).toEqual({ changes: true, replaces: [] });
    }
  });

  it("looks through the proxy again after every rollout, without loading it again", async () => {
    for (const news of [{ readyAt: "2030-01-01T00:01:00.000Z" }, { release: "img2 secrets config" }]) {
      expect(await diff(news)).toEqual({ changes: true, replaces: [] });
      expect(configurationChanged(base, { ...base, ...news })).toBe(false);
    }
    // A new probe image alone (it comes with a new release, and so a new proof) is no reason.
    expect(await diff({ probe: { ...base.probe, image: "img2" } })).toEqual({ changes: false, replaces: [] });
  });

  it("a /version answer counts by the container that answered; anything else says why not", () => {
    expect(answeringRelease(200, JSON.stringify({ release: "0123456789ab", version: "1.0.0" }))).toEqual({ release: "0123456789ab" });
    expect(answeringRelease(502, JSON.stringify({ detail: "the release did not answer" }))).toEqual({ refused: "HTTP 502, release undefined" });
    expect(answeringRelease(200, "<html>")).toEqual({ refused: "HTTP 200, release undefined" });
  });
});
