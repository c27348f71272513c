// TLS at the front proxy through the program, under Pulumi's mocks: what each mode gives the proxy
// (ports, where they are published), the route (its TLS input, secret where it holds the key) and
// the release (the domain is an accepted host); the `url` and `tls` outputs; the status line the
// pull-request comment reads; and prod's gate holding the certificate against
// promotion.minCertificateDays. The look through the proxy at the program's start is stubbed here
// (test/proxyTls.docker.test.ts and the end-to-end suite make it for real).
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { Observation } from "../components/proxy/observe";
import { factsOfDer } from "../components/proxy/certificates";
import { readTlsStatus } from "../components/proxy/tlsStatus";
import { readVerdict } from "../components/promotion/reasons";
import { canaryDatabaseUrl } from "../support/canary";
import { asSeenByEngine, awaitOutput, PROJECT, removeStackFiles, settle, setUpStack, stagingSetup, type RecordingMocks, type StackSetup } from "../support/mocks";
import { stagingRecord } from "../support/stagingRecord";
import { spyOnInfoLog } from "../support/programLog";
import { programCertificates, type ProgramCertificates } from "../support/throwawayCa";

afterAll(removeStackFiles);

const registryChecks = vi.hoisted(() => [] as unknown[]);
vi.mock("../components/docker/preflight", async (importOriginal) => (await import("../support/mocks")).recordingPreflight(importOriginal, registryChecks as never));
const look = vi.hoisted(() => ({ observation: undefined as Observation | undefined, calls: [] as unknown[] }));
vi.mock("../components/proxy/observe", () => ({
  observeServedCertificate: async (args: unknown) => {
    look.calls.push(args);
    return look.observation ?? { unobserved: "no release of this stack runs yet", at: new Date().toISOString() };
  },
}));

const DOMAIN = "api.example.test";
/** Chains (PEM) and keys, and the DER of their leaves, valid for 30 and for 3 days. */
const made: ProgramCertificates = { chain: "", key: "", der: "", shortChain: "", shortKey: "", shortDer: "", otherDer: "" };

beforeAll(async () => void Object.assign(made, await programCertificates("tls program tests", DOMAIN)), 60_000);

const logged = spyOnInfoLog();
beforeEach(() => {
  look.observation = undefined;
  look.calls.length = 0;
});
afterEach(() => void delete process.env.BACKEND_DELIVERY_STACK_FILE);

type Outputs = Record<string, pulumi.Output<unknown>>;
const DYNAMIC = "pulumi-nodejs:dynamic:Resource";
const CONTAINER = "docker:index/container:Container";

async function run(setup: StackSetup): Promise<{ mocks: RecordingMocks; outputs: Outputs }> {
  const { mocks } = await setUpStack(setup);
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Outputs>;
  const outputs = await program();
  await settle(outputs);
  return { mocks, outputs };
}

/** A staging stack with these proxy settings; `extra` at the top level. */
function staging(proxy: Record<string, unknown>, extra: Record<string, unknown> = {}, options: Partial<StackSetup> = {}): StackSetup {
  const setup = stagingSetup();
  Object.assign(setup.config, { proxy, ...extra });
  if (extra.tlsPrivateKey !== undefined) setup.encrypted = [...setup.encrypted!, "tlsPrivateKey"];
  return { ...setup, ...options, mocks: { servedCertificate: made.der, ...options.mocks } };
}

const loggedStatus = () => readTlsStatus(logged());
const S = "backend-delivery-staging";

describe("staging with TLS at the proxy", () => {
  it("acme: both ports published on every interface (80 allowed), the route gets the ACME settings, url and tls say what is served", async () => {
    const acme = { directory: "https://acme.example.test/dir", email: "ops@example.test" };
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "acme", acme } }, { service: { hostPort: 80, env: { LOG_LEVEL: "info" } } }));
    expect(mocks.byName(`${S}-proxy`, CONTAINER).inputs.ports).toEqual([
      { internal: 8080, external: 80, ip: "0.0.0.0", protocol: "tcp" },
      { internal: 8443, external: 8443, ip: "0.0.0.0", protocol: "tcp" },
    ]);
    const route = mocks.byName(`${S}-route`, DYNAMIC).inputs;
    expect(asSeenByEngine(route.tls)).toEqual({ secret: false, value: { mode: "acme", domain: DOMAIN, httpsPort: 8443, acme } });
    expect(route).toMatchObject({ proxyUser: "10002:10002", tlsTimeoutSeconds: 120 });
    expect(await awaitOutput(outputs.url!)).toBe(`https://${DOMAIN}:8443`);
    const facts = factsOfDer(made.der);
    expect(await awaitOutput(outputs.tls!)).toEqual({ mode: "acme", domain: DOMAIN, issuer: facts.issuer, notAfter: facts.notAfter, fingerprint: facts.fingerprint });
    // Requests name the domain as Host: the backend must accept it (and the probes' loopback address).
    expect((asSeenByEngine(mocks.byName(`${S}-release`, DYNAMIC).inputs.env).value as string[])).toContain(`ALLOWED_HOSTS=${DOMAIN},127.0.0.1`);
    // The program looked through the proxy from a running release, and logged what it saw for the comment.
    expect(look.calls).toEqual([{ endpoint: {}, component: S, proxyContainer: `${S}-proxy`, domain: DOMAIN }]);
    expect(loggedStatus()).toMatchObject({ mode: "acme", domain: DOMAIN, unobserved: "no release of this stack runs yet" });
  });

  it("certificate: the route's TLS input holds the key, so it is secret, and no output or log line holds any of it", async () => {
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, httpsPort: 443, tls: { mode: "certificate", certificate: made.chain } }, { tlsPrivateKey: made.key }));
    const route = asSeenByEngine(mocks.byName(`${S}-route`, DYNAMIC).inputs.tls);
    expect(route).toEqual({ secret: true, value: { mode: "certificate", domain: DOMAIN, httpsPort: 443, certificate: made.chain, privateKey: made.key } });
    expect(await awaitOutput(outputs.url!)).toBe(`https://${DOMAIN}`);
    const everything = JSON.stringify([await Promise.all(Object.values(outputs).map((o) => awaitOutput(o))), logged()]);
    for (const line of made.key.split("\n").filter((l) => !l.startsWith("-----"))) expect(everything).not.toContain(line);
    for (const output of Object.values(outputs)) expect(await pulumi.isSecret(pulumi.output(output))).toBe(false);
    expect(loggedStatus()?.configured?.fingerprint).toBe(factsOfDer(made.der).fingerprint);
  });

  it("an update that does not switch the proxy records what it served at the program's start (a renewal shows)", async () => {
    look.observation = { der: made.otherDer, at: new Date().toISOString() };
    const { outputs } = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "internal" } }, {}, { mocks: { switchedAt: "2000-01-01T00:00:00.000Z" } }));
    expect(((await awaitOutput(outputs.tls!)) as { fingerprint: string }).fingerprint).toBe(factsOfDer(made.otherDer).fingerprint);
    expect(loggedStatus()?.served?.fingerprint).toBe(factsOfDer(made.otherDer).fingerprint);
    // One that switches records what the route saw after its switch.
    const switched = await run(staging({ domain: DOMAIN, httpsPort: 8443, tls: { mode: "internal" } }));
    expect(((await awaitOutput(switched.outputs.tls!)) as { fingerprint: string }).fingerprint).toBe(factsOfDer(made.der).fingerprint);
  });

  it("upstream: plain HTTP on loopback as before, url the public name over HTTPS, nothing to look at", async () => {
    const { mocks, outputs } = await run(staging({ domain: DOMAIN, tls: { mode: "upstream" } }));
    expect(mocks.byName(`${S}-proxy`, CONTAINER).inputs.ports).toEqual([{ internal: 8080, external: 8080, ip: "127.0.0.1", protocol: "tcp" }]);
    expect(mocks.byName(`${S}-route`, DYNAMIC).inputs.tls).toBeUndefined();
    expect(await awaitOutput(outputs.url!)).toBe(`https://${DOMAIN}`);
    expect(await awaitOutput(outputs.tls!)).toEqual({ mode: "upstream", domain: DOMAIN });
    expect(look.calls).toEqual([]);
    expect(loggedStatus()).toMatchObject({ mode: "upstream", domain: DOMAIN });
  });
});

describe("prod's gate and its certificate", () => {
  const STAGING = `organization/${PROJECT}/staging`;
  const DIGEST = `sha256:${"d".repeat(64)}`;
  const { outputs: stagingOutputs } = stagingRecord({ digest: DIGEST, checkedAt: new Date(Date.now() - 3_600_000).toISOString(), version: "1.2.3" });
  const prod = (proxy: Record<string, unknown>, extra: Record<string, unknown> = {}): StackSetup => ({
    stack: "prod",
    config: {
      environment: "prod",
      service: { hostPort: 80 },
      proxy,
      secrets: { DATABASE_URL: canaryDatabaseUrl("prod-canary-pw"), SECRET_KEY: "prod-canary-key-5b1e-0123456789abcdef012345" },
      ...extra,
    },
    encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY", ...(extra.tlsPrivateKey === undefined ? [] : ["tlsPrivateKey"])],
    mocks: { stacks: { [STAGING]: stagingOutputs() }, servedCertificate: made.der },
  });
  const refusal = async (setup: StackSetup): Promise<string> => {
    const error = await run(setup).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(pulumi.RunError);
    return error!.message;
  };
  const verdict = () => readVerdict(logged());

  it("refuses a chain of the user's that expires within promotion.minCertificateDays, naming the commands that replace it", async () => {
    const message = await refusal(prod({ domain: DOMAIN, tls: { mode: "certificate", certificate: made.shortChain } }, { tlsPrivateKey: made.shortKey }));
    expect(message).toMatch(/✖ the certificate prod is given in proxy.tls.certificate expires in [23]\.\d days \(.+\), within promotion.minCertificateDays = 7\n {2}→ at proxy\.tls\.certificate\n/);
    expect(message).toContain("`pulumi config set --stack prod --path proxy.tls.certificate < fullchain.pem`");
    expect(message).toContain("`pulumi config set --stack prod --secret tlsPrivateKey < privkey.pem`");
    const logged = verdict();
    expect(logged?.allowed === false && logged.reasons.map((r) => r.code)).toEqual(["certificate-expiring"]);
    // Nothing of prod was registered: the gate decided first.
    expect(message).not.toContain(made.shortKey.split("\n")[1]);
  });

  it("lets it through with a smaller promotion.minCertificateDays", async () => {
    const { outputs } = await run(prod({ domain: DOMAIN, tls: { mode: "certificate", certificate: made.shortChain } }, { tlsPrivateKey: made.shortKey, promotion: { minCertificateDays: 2 } }));
    expect(await awaitOutput(outputs.imageRef!)).toBe(DIGEST);
  });

  it("acme: refuses while the certificate the proxy serves is about to expire (Caddy failed to renew it), and an override lifts it", async () => {
    look.observation = { der: made.shortDer, at: new Date().toISOString() };
    const message = await refusal(prod({ domain: DOMAIN, tls: { mode: "acme" } }));
    expect(message).toMatch(/✖ the certificate prod's proxy serves expires in [23]\.\d days .*Caddy has not managed to renew it\n {2}→ at tls\.notAfter\n/);
    expect(message).toContain("`docker logs backend-delivery-prod-proxy`");
    const { outputs } = await run(prod({ domain: DOMAIN, tls: { mode: "acme" } }, { promotion: { override: { reason: "INC-9: renewing by hand", approvedBy: "alice" } } }));
    expect(await awaitOutput(outputs.promotionOverride!)).toEqual({ reason: "INC-9: renewing by hand", approvedBy: "alice" });
  });

  it("acme: a first deploy has nothing served yet to hold against the rule", async () => {
    const { outputs } = await run(prod({ domain: DOMAIN, tls: { mode: "acme" } }));
    expect(await awaitOutput(outputs.url!)).toBe(`https://${DOMAIN}`);
    expect(verdict()?.allowed).toBe(true);
  });
});
