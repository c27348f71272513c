// The pure parts of TLS at the front proxy: Caddy's configuration for each mode around any upstream
// handler, certificate facts, the files the route writes, Caddy's reason for a failed issuance, the
// `tls` record and status line, and how the pull-request comment shows them. Certificates are made
// by a CA of the test's own (openssl).
import { X509Certificate } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TlsRecord } from "../components/contract";
import { caddyConfig, frontConfig, type Handler, type ProxyTls } from "../components/proxy/caddyConfig";
import { caRootProblem, certificateFacts, checkCertificate, factsOfDer, parseCertificates } from "../components/proxy/certificates";
import { routeProvider, type ProxyRouteInputs } from "../components/proxy/route";
import { leafDer, obtainFailure, ownerOf, tlsFiles } from "../components/proxy/tlsProbe";
import { formatTlsStatus, readTlsStatus, tlsRecord, tlsStatusOf } from "../components/proxy/tlsStatus";
import { renderBody } from "../scripts/lib/preview/render";
import { summarize } from "../scripts/lib/preview/stackSummary";
import { HSTS } from "../support/securityHeaders";
import { makeCa, signServerCertificate } from "../support/throwawayCa";

const DOMAIN = "api.example.test";
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-tls-proxy-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const pem = { chain: "", key: "", leaf: "", ca: "" };

beforeAll(async () => {
  const ca = await makeCa(dir, "tls proxy tests");
  const made = await signServerCertificate(ca, "leaf", { commonName: DOMAIN, dnsNames: [DOMAIN, `www.${DOMAIN}`], days: 30 });
  const read = (file: string) => fs.readFileSync(file, "utf8").trim();
  Object.assign(pem, { leaf: read(made.certFile), chain: `${read(made.certFile)}\n${read(ca.caFile)}`, key: read(made.keyFile), ca: read(ca.caFile) });
});

type Json = Record<string, unknown>;
const apps = (config: Json) => config.apps as Json;
const servers = (config: Json) => (apps(config).http as { servers: Record<string, Json> }).servers;

describe("Caddy's configuration with TLS at the proxy", () => {
  // A handler of another target's (a Swarm service's dynamic upstreams): taken as it is.
  const upstream: Handler[] = [{ handler: "reverse_proxy", dynamic_upstreams: { source: "a", name: "tasks.backend", port: "8000", refresh: "1s" } }];
  const tls = (overrides: Partial<ProxyTls> = {}): ProxyTls => ({
    mode: "acme",
    domain: DOMAIN,
    httpsPort: 443,
    acme: { directory: "https://acme.example.test/dir", email: "ops@example.test", caRootFile: "/data/tls/acme-ca-1.pem" },
    ...overrides,
  });

  it("serves HTTPS with HTTP/2 on 8443 around the upstream handler, HSTS on every answer", () => {
    const config = frontConfig(upstream, { hsts: false, tls: tls() });
    const front = servers(config).front!;
    expect(front.listen).toEqual([":8443"]);
    expect(front.protocols).toEqual(["h1", "h2"]);
    expect(front.tls_connection_policies).toEqual([{}]);
    const handle = (front.routes as { handle: Handler[] }[])[0]!.handle;
    expect(handle[0]).toEqual({ handler: "headers", response: { deferred: true, set: { "Strict-Transport-Security": [HSTS] } } });
    expect(handle.slice(1)).toEqual(upstream);
    // The proxy's own 502 over HTTPS carries HSTS too, whatever `hsts` says for plain HTTP.
    const errorHandle = ((front.errors as { routes: { handle: Handler[] }[] }).routes[0]!.handle[1] as { headers: Record<string, string[]> }).headers;
    expect(errorHandle["Strict-Transport-Security"]).toEqual([HSTS]);
    expect((apps(config).http as Json).http_port).toBe(8080);
    expect((apps(config).http as Json).https_port).toBe(8443);
  });

  it("redirects plain HTTP to HTTPS with 308, without HSTS, naming the port unless it is 443", () => {
    const redirect = (httpsPort: number) => {
      const server = servers(frontConfig(upstream, { hsts: true, tls: tls({ httpsPort }) })).redirect!;
      expect(server.listen).toEqual([":8080"]);
      const answer = (server.routes as { handle: { status_code: number; headers: Record<string, string[]> }[] }[])[0]!.handle[0]!;
      expect(answer.status_code).toBe(308);
      expect(answer.headers["Strict-Transport-Security"]).toBeUndefined();
      expect(answer.headers["X-Frame-Options"]).toEqual(["DENY"]);
      return answer.headers.Location;
    };
    expect(redirect(443)).toEqual(["https://{http.request.host}{http.request.uri}"]);
    expect(redirect(8443)).toEqual(["https://{http.request.host}:8443{http.request.uri}"]);
  });

  it("acme: manages the domain with the ACME issuer, http-01 on the HTTP port only, the CA root trusted", () => {
    const tlsApp = apps(frontConfig(upstream, { hsts: true, tls: tls() })).tls;
    expect(tlsApp).toEqual({
      certificates: { automate: [DOMAIN] },
      automation: {
        policies: [
          {
            subjects: [DOMAIN],
            issuers: [
              {
                module: "acme",
                ca: "https://acme.example.test/dir",
                email: "ops@example.test",
                trusted_roots_pem_files: ["/data/tls/acme-ca-1.pem"],
                challenges: { http: { alternate_port: 8080 }, "tls-alpn": { disabled: true } },
              },
            ],
          },
        ],
      },
    });
    expect(apps(frontConfig(upstream, { hsts: true, tls: tls() })).pki).toBeUndefined();
  });

  it("certificate: loads the chain and key files; internal: Caddy's CA, never installed in a trust store", () => {
    const files = { certificate: "/data/tls/chain-1.pem", key: "/data/tls/key-1.pem" };
    expect(apps(frontConfig(upstream, { hsts: true, tls: tls({ mode: "certificate", files }) })).tls).toEqual({ certificates: { load_files: [files] } });
    const internal = apps(frontConfig(upstream, { hsts: true, tls: tls({ mode: "internal" }) }));
    expect(internal.tls).toEqual({
      certificates: { automate: [DOMAIN] },
      automation: { policies: [{ subjects: [DOMAIN], issuers: [{ module: "internal" }], disable_ocsp_stapling: true }] },
    });
    expect(internal.pki).toEqual({ certificate_authorities: { local: { install_trust: false } } });
    expect(() => frontConfig(upstream, { hsts: true, tls: tls({ mode: "certificate" }) })).toThrow(/chain and key files/);
  });

  it("without TLS: one plain server on 8080, no tls app, the release's reverse proxy as before", () => {
    const config = caddyConfig({ upstream: "release:8000", hsts: true });
    expect(Object.keys(servers(config))).toEqual(["front"]);
    expect(servers(config).front!.listen).toEqual([":8080"]);
    expect(apps(config).tls).toBeUndefined();
    const handle = (servers(config).front!.routes as { handle: Handler[] }[])[0]!.handle;
    expect(handle.map((h) => h.handler)).toEqual(["headers", "reverse_proxy"]);
  });
});

describe("certificate facts", () => {
  it("reads issuer, validity, names and the SHA-256 fingerprint as openssl prints them", () => {
    const facts = certificateFacts(parseCertificates(pem.chain)[0]!);
    const x509 = new X509Certificate(pem.leaf);
    expect(facts.issuer).toBe("CN=throwaway test CA for tls proxy tests");
    expect(facts.subject).toBe(`CN=${DOMAIN}`);
    expect(facts.dnsNames).toEqual([DOMAIN, `www.${DOMAIN}`]);
    expect(facts.fingerprint).toBe(x509.fingerprint256);
    expect(facts.fingerprint).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(Date.parse(facts.notAfter)).toBe(Date.parse(x509.validTo));
    expect(factsOfDer(leafDer(pem.chain)!)).toEqual(facts);
  });

  it("checks a chain and key, and a CA root", () => {
    expect(checkCertificate(pem.chain, pem.key, DOMAIN, new Date())).toEqual({ certificate: [], privateKey: [] });
    expect(checkCertificate(pem.chain, pem.key, `www.${DOMAIN}`, new Date()).certificate).toEqual([]);
    expect(checkCertificate(pem.chain, pem.key, "other.test", new Date()).certificate[0]).toMatch(/^does not cover proxy.domain other.test/);
    expect(checkCertificate(pem.chain, pem.key, DOMAIN, new Date(Date.now() + 40 * 86_400_000)).certificate[0]).toMatch(/^expired at /);
    expect(checkCertificate("", undefined, DOMAIN, new Date()).certificate).toEqual(["holds no PEM certificate (-----BEGIN CERTIFICATE----- blocks, leaf first)"]);
    expect(caRootProblem(pem.ca)).toBeUndefined();
    expect(caRootProblem(pem.leaf)).toMatch(/^is not a CA certificate/);
  });
});

describe("the route's TLS files and Caddy's reasons", () => {
  it("writes the chain and key named by the chain's digest, the key mode 600, all owned by the proxy's user", async () => {
    const owner = ownerOf("10001:10001");
    const files = await tlsFiles({ mode: "certificate", domain: DOMAIN, httpsPort: 443, certificate: pem.chain, privateKey: pem.key }, owner);
    expect(files.entries.map((e) => [e.name, e.mode.toString(8), e.uid, e.gid])).toEqual([
      ["caddy", "700", 10001, 10001],
      ["tls", "700", 10001, 10001],
      [expect.stringMatching(/^tls\/chain-[0-9a-f]{16}\.pem$/), "644", 10001, 10001],
      [expect.stringMatching(/^tls\/key-[0-9a-f]{16}\.pem$/), "600", 10001, 10001],
    ]);
    expect(files.proxy.files?.key).toBe(`/data/${files.entries[3]!.name}`);
    // The same chain always gets the same names; another one others.
    expect((await tlsFiles({ mode: "certificate", domain: DOMAIN, httpsPort: 443, certificate: pem.chain, privateKey: pem.key }, owner)).names).toEqual(files.names);
    const acme = await tlsFiles({ mode: "acme", domain: DOMAIN, httpsPort: 443, acme: { directory: "https://a.test/dir", caRoot: pem.ca } }, owner);
    expect(acme.names).toEqual([expect.stringMatching(/^acme-ca-[0-9a-f]{16}\.pem$/)]);
    expect(acme.proxy.acme).toEqual({ directory: "https://a.test/dir", caRootFile: `/data/tls/${acme.names[0]!}` });
    expect(() => ownerOf("caddy")).toThrow(/not numeric/);
  });

  it("reads Caddy's own reason for a failed issuance from its log (lines of Caddy 2.6.2)", () => {
    const logs = [
      '{"level":"info","ts":1796172812.29,"logger":"tls.obtain","msg":"obtaining certificate","identifier":"api.example.test"}',
      '{"level":"error","ts":1796172812.80,"logger":"tls.obtain","msg":"could not get certificate from issuer","identifier":"api.example.test","issuer":"172.17.0.1:24999-dir","error":"registering account [mailto:ops@example.test] with server: provisioning client: performing request: Get \\"https://172.17.0.1:24999/dir\\": dial tcp 172.17.0.1:24999: connect: connection refused"}',
      '{"level":"error","ts":1796172812.80,"logger":"tls.obtain","msg":"will retry","error":"[api.example.test] Obtain: registering account","attempt":1,"retrying_in":60}',
    ].join("\n");
    expect(obtainFailure(logs, DOMAIN)).toBe(
      'registering account [mailto:ops@example.test] with server: provisioning client: performing request: Get "https://172.17.0.1:24999/dir": dial tcp 172.17.0.1:24999: connect: connection refused',
    );
    expect(obtainFailure(logs, "other.test")).toBeUndefined();
    expect(obtainFailure(logs.split("\n")[2]!, DOMAIN)).toBe("[api.example.test] Obtain: registering account");
    expect(obtainFailure('{"level":"warn","logger":"tls","msg":"stapling OCSP"}\nnot json', DOMAIN)).toBeUndefined();
  });
});

describe("the route's diff", () => {
  const base: ProxyRouteInputs = {
    proxyContainer: "p",
    proxyContainerId: "pid",
    releaseName: "r",
    releaseId: "rid",
    releasePort: 8000,
    network: "n",
    servingAlias: "n-serving",
    readyAt: "2030-01-01T00:00:00.000Z",
    hsts: true,
    hostHeader: "127.0.0.1",
    proxyUser: "10002:10002",
    tlsTimeoutSeconds: 120,
    tls: { mode: "certificate", domain: DOMAIN, httpsPort: 443, certificate: "chain", privateKey: "key" },
  };
  const diff = (news: Partial<ProxyRouteInputs>) => routeProvider.diff!("id", { ...base, switchedAt: base.readyAt }, { ...base, ...news });

  it("switches again for a new certificate, key or mode, not for the same settings in another key order or a new timeout", async () => {
    expect(await diff({})).toEqual({ changes: false, replaces: [] });
    expect(await diff({ tls: { privateKey: "key", certificate: "chain", httpsPort: 443, domain: DOMAIN, mode: "certificate" } })).toEqual({ changes: false, replaces: [] });
    expect(await diff({ tlsTimeoutSeconds: 30 })).toEqual({ changes: false, replaces: [] });
    expect(await diff({ tls: { ...base.tls!, privateKey: "other key" } })).toEqual({ changes: true, replaces: [] });
    expect(await diff({ tls: { mode: "internal", domain: DOMAIN, httpsPort: 443 } })).toEqual({ changes: true, replaces: [] });
    const plain: ProxyRouteInputs = { ...base };
    delete plain.tls;
    expect(await routeProvider.diff!("id", { ...plain, switchedAt: base.readyAt }, plain)).toEqual({ changes: false, replaces: [] });
    expect(await routeProvider.diff!("id", { ...plain, switchedAt: base.readyAt }, base)).toEqual({ changes: true, replaces: [] });
  });

  it("switches again for a new serving name or network, and for a route an earlier version recorded without them", async () => {
    expect(await diff({ servingAlias: "other-serving" })).toEqual({ changes: true, replaces: [] });
    expect(await diff({ network: "other" })).toEqual({ changes: true, replaces: [] });
    const earlier: Partial<ProxyRouteInputs> = { ...base };
    delete earlier.network;
    delete earlier.servingAlias;
    expect(await routeProvider.diff!("id", { ...(earlier as ProxyRouteInputs), switchedAt: base.readyAt }, base)).toEqual({ changes: true, replaces: [] });
  });
});

describe("the tls output and the status line", () => {
  it("records what was served where the proxy terminates TLS, the mode alone elsewhere", () => {
    const der = leafDer(pem.chain)!;
    const record = tlsRecord("acme", DOMAIN, der);
    const facts = factsOfDer(der);
    expect(record).toEqual({ mode: "acme", domain: DOMAIN, issuer: facts.issuer, notAfter: facts.notAfter, fingerprint: facts.fingerprint });
    expect(TlsRecord.parse(record)).toEqual(record);
    expect(tlsRecord("off", undefined, undefined)).toEqual({ mode: "off" });
    expect(tlsRecord("upstream", DOMAIN, undefined)).toEqual({ mode: "upstream", domain: DOMAIN });
    expect(() => tlsRecord("certificate", DOMAIN, undefined)).toThrow(/no certificate served by the proxy was observed/);
    // The contract holds a terminating mode to its certificate.
    expect(TlsRecord.safeParse({ mode: "internal" }).success).toBe(false);
  });

  it("writes and reads back one status line; a line that breaks the schema is an error", () => {
    const der = leafDer(pem.chain)!;
    const status = tlsStatusOf("certificate", DOMAIN, { der, at: "2030-01-01T00:00:00.000Z" }, pem.chain);
    expect(status.served).toEqual(status.configured);
    const line = formatTlsStatus(status);
    expect(line.startsWith("tls status: {")).toBe(true);
    expect(readTlsStatus(["something else", `info: ${line}`])).toEqual(status);
    expect(readTlsStatus(["promotion verdict: {}"])).toBeUndefined();
    expect(() => readTlsStatus(['tls status: {"mode":"acme"}'])).toThrow(/breaks the contract/);
    expect(tlsStatusOf("acme", DOMAIN, { unobserved: "no release of this stack runs yet", at: "2030-01-01T00:00:00.000Z" }, undefined)).toEqual({
      mode: "acme",
      domain: DOMAIN,
      at: "2030-01-01T00:00:00.000Z",
      unobserved: "no release of this stack runs yet",
    });
  });
});

describe("the pull-request comment shows each stack's TLS", () => {
  const preview = (stack: string, ...lines: string[]) => ({
    stack,
    json: JSON.stringify({ steps: [], diagnostics: lines.map((message) => ({ severity: "info", message })), changeSummary: { same: 3 } }),
    exitCode: 0,
  });
  const at = "2030-01-01T00:00:00.000Z";
  const cert = (days: number, fingerprint = "AA:".repeat(31) + "AA") => ({ issuer: "CN=R11, O=Let's Encrypt, C=US", notAfter: new Date(Date.parse(at) + days * 86_400_000).toISOString(), fingerprint });

  it("the mode and the remaining validity of what is served, and of a chain this change gives", () => {
    const staging = preview("staging", formatTlsStatus({ mode: "acme", domain: DOMAIN, at, served: cert(61.5) }));
    const prod = preview("prod", formatTlsStatus({ mode: "certificate", domain: DOMAIN, at, served: cert(3), configured: cert(90, "BB:".repeat(31) + "BB") }));
    const off = preview("dev", formatTlsStatus({ mode: "off", at }));
    const upstream = preview("edge", formatTlsStatus({ mode: "upstream", domain: DOMAIN, at }));
    const none = preview("fresh", formatTlsStatus({ mode: "internal", domain: DOMAIN, at, unobserved: "no release of this stack runs yet" }));
    const expired = preview("old", formatTlsStatus({ mode: "acme", domain: DOMAIN, at, served: cert(-2) }));
    const previews = [staging, prod, off, upstream, none, expired];
    const body = renderBody(previews.map(summarize), previews);
    expect(body).toContain(`**TLS**: \`acme\` for \`${DOMAIN}\` — serves a certificate from \`CN=R11, O=Let's Encrypt, C=US\`, valid 61.5 more days (until \`${cert(61.5).notAfter}\`)`);
    expect(body).toContain(`valid 3.0 more days (until \`${cert(3).notAfter}\`); this change serves the chain in \`proxy.tls.certificate\`, valid 90.0 more days`);
    expect(body).toContain("**TLS**: `off` — plain HTTP at the proxy, on loopback");
    expect(body).toContain(`**TLS**: \`upstream\` for \`${DOMAIN}\` — ended by the load balancer in front; the proxy serves HTTP`);
    expect(body).toContain("— no certificate served yet (no release of this stack runs yet)");
    expect(body).toContain("**EXPIRED** 2.0 days ago");
  });

  it("says nothing of TLS for a preview that ended before the program logged it", () => {
    const failed = { stack: "staging", json: JSON.stringify({ diagnostics: [{ severity: "error", message: "config is invalid" }] }), exitCode: 255 };
    expect(summarize(failed).tls).toBeUndefined();
    expect(renderBody([summarize(failed)], [failed])).not.toContain("**TLS**");
  });
});
