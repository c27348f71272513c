// The front proxy's TLS on the real Docker engine: a real Caddy 2 proxy, run as FrontProxy runs it
// with TLS at the proxy (both ports published, config and data volumes), switched by the route's
// own provider between the modes: `certificate` with a CA this test makes (openssl), a replaced
// certificate, `internal` (its root survives a replacement of the proxy), `acme` against Pebble with
// a real http-01 challenge through the proxy's HTTP port, an ACME CA that cannot be reached (Caddy's
// reason, and the previous certificate keeps serving), and plain HTTP (`off`, `upstream`). Needs the
// engine, the local images, openssl and Pebble; fails (never skips) without them.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hardeningProfile, proxyProfile, toDockerRunArgs, toHostConfig } from "../components/hardening";
import { factsOfDer } from "../components/proxy/certificates";
import { routeProvider, type ProxyRouteInputs, type ProxyRouteOutputs } from "../components/proxy/route";
import { leafDer, type RouteTls } from "../components/proxy/tlsProbe";
import { releaseProvider, type ReleaseOutputs } from "../components/release/provider";
import { buildImage, docker, dockerHostAddress, LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, removeContainers, removeImages, requireDockerEngine, uniqueName } from "../support/docker";
import { startPebble, type Pebble } from "../support/pebble";
import { SECURITY_HEADERS, HSTS } from "../support/securityHeaders";
import { makeCa, signServerCertificate, type TestCa } from "../support/throwawayCa";
import { freePort, httpRequest, httpsRequest, waitFor } from "../support/wait";

const TAG = `${uniqueName("bd-tls-test")}:latest`;
const PREFIX = uniqueName("bd-tls");
const NETWORK = `${PREFIX}-net`;
/** Where releases start, before the route joins them to the proxy's network (sorted before it, as the program's). */
const EGRESS = `${PREFIX}-egress`;
const VOLUME = `${PREFIX}-data`;
const PROXY = `${PREFIX}-proxy`;
const CONFIG_VOLUME = `${PREFIX}-proxy-config`;
const DATA_VOLUME = `${PREFIX}-proxy-data`;
const DOMAIN = `app.${randomBytes(3).toString("hex")}.test`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-tls-"));
const releases: ReleaseOutputs[] = [];
let release: ReleaseOutputs;
let imageId = "";
let httpPort = 0;
let httpsPort = 0;
let proxyId = "";
let ca: TestCa;
let pebble: Pebble;
/** The route as the last switch left it. */
let current: ProxyRouteOutputs | undefined;

/** The proxy as FrontProxy runs it with TLS at the proxy (a new container on the same volumes when called again). */
async function startProxy(): Promise<void> {
  await removeContainers(PROXY);
  const run = await docker([
    "run", "-d", "--name", PROXY, "--network", NETWORK, ...toDockerRunArgs(proxyProfile, CONFIG_VOLUME), "--volume", `${DATA_VOLUME}:/data`,
    "-e", "XDG_CONFIG_HOME=/config", "-e", "XDG_DATA_HOME=/data", "-p", `0.0.0.0:${httpPort}:8080`, "-p", `0.0.0.0:${httpsPort}:8443`,
    LOCAL_PROXY_IMAGE, "caddy", "run", "--resume",
  ]);
  proxyId = run.stdout.trim();
  // The route loads its configuration through the admin endpoint: wait for it, as an update's readiness check does.
  // (The local image is built on the Python base, so Python can ask it.)
  const ask = ["exec", PROXY, "python3", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:2019/config/', timeout=2)"];
  await waitFor(async () => ((await docker(ask, { allowFailure: true })).code === 0 ? true : undefined), { timeoutMs: 15_000, what: "the proxy's admin endpoint" });
}

const routeInputs = (tls?: RouteTls): ProxyRouteInputs => ({
  proxyContainer: PROXY,
  proxyContainerId: proxyId,
  releaseName: release.name,
  releaseId: release.containerId,
  releasePort: 8000,
  network: NETWORK,
  servingAlias: `${PREFIX}-serving`,
  readyAt: new Date().toISOString(),
  hsts: true,
  hostHeader: "127.0.0.1",
  proxyUser: proxyProfile.user,
  tlsTimeoutSeconds: 60,
  ...(tls === undefined ? {} : { tls }),
});

/** Switches the proxy as an update of the route does (a create the first time). */
async function switchTo(tls?: RouteTls): Promise<ProxyRouteOutputs> {
  const inputs = routeInputs(tls);
  current = current === undefined ? ((await routeProvider.create!(inputs)).outs as ProxyRouteOutputs) : ((await routeProvider.update!("route", current, inputs)).outs as ProxyRouteOutputs);
  return current;
}

const base = () => `https://${DOMAIN}:${httpsPort}`;
const read = (file: string) => fs.readFileSync(file, "utf8");

async function certificate(name: string, days = 1): Promise<{ certificate: string; privateKey: string }> {
  const made = await signServerCertificate(ca, name, { commonName: DOMAIN, dnsNames: [DOMAIN], days });
  return { certificate: read(made.certFile), privateKey: read(made.keyFile) };
}

beforeAll(async () => {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  [httpPort, httpsPort] = [await freePort(), await freePort()];
  pebble = await startPebble({ address: await dockerHostAddress(), httpPort });
  ca = await makeCa(dir, DOMAIN);
  imageId = (await buildImage({ context: path.resolve(__dirname, "../backend"), tag: TAG, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } })).imageId;
  await docker(["network", "create", NETWORK]);
  await docker(["network", "create", EGRESS]);
  for (const volume of [VOLUME, CONFIG_VOLUME, DATA_VOLUME]) await docker(["volume", "create", volume]);
  const { outs } = await releaseProvider.create!({
    namePrefix: `${PREFIX}-app`,
    image: imageId,
    env: ["APP_ENV=staging", "DATABASE_URL=sqlite:////data/app.db", "PORT=8000", `SECRET_KEY=${randomBytes(32).toString("hex")}`, `ALLOWED_HOSTS=${DOMAIN},127.0.0.1`],
    labels: { "backend-delivery.role": "release" },
    user: hardeningProfile.user,
    stopSignal: hardeningProfile.stopSignal,
    stopTimeoutSeconds: hardeningProfile.stopTimeoutSeconds,
    hostConfig: toHostConfig(hardeningProfile, VOLUME),
    network: EGRESS,
  });
  release = outs as ReleaseOutputs;
  releases.push(release);
  await startProxy();
}, 900_000);

afterAll(async () => {
  await removeContainers(PROXY, ...releases.map((r) => r.name));
  await docker(["volume", "rm", VOLUME, CONFIG_VOLUME, DATA_VOLUME], { allowFailure: true });
  await docker(["network", "rm", NETWORK, EGRESS], { allowFailure: true });
  await removeImages(TAG);
  await pebble?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("TLS at the front proxy, on the real engine", () => {
  let first: { certificate: string; privateKey: string };

  it("certificate: serves the user's chain over HTTPS with HTTP/2 and HSTS, redirects plain HTTP with 308, and the key is in no inspect field", async () => {
    first = await certificate("first");
    const outs = await switchTo({ mode: "certificate", domain: DOMAIN, httpsPort, ...first });
    const answer = await httpsRequest(`${base()}/version`, { ca: read(ca.caFile), alpn: true });
    expect(answer.status).toBe(200);
    expect(JSON.parse(answer.body)).toMatchObject({ release: release.containerId.slice(0, 12) });
    expect(answer.alpn).toBe("h2");
    expect(answer.headers["strict-transport-security"]).toBe(HSTS);
    expect(answer.headers.server).toBeUndefined();
    // What the route recorded is what a client is served.
    expect(outs.servedCertificate).toBe(answer.der);
    expect(factsOfDer(outs.servedCertificate!).issuer).toBe(`CN=throwaway test CA for ${DOMAIN}`);

    const redirect = await httpRequest(`http://127.0.0.1:${httpPort}/api/v1/items?limit=5`, { headers: { host: `${DOMAIN}:${httpPort}` } });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe(`https://${DOMAIN}:${httpsPort}/api/v1/items?limit=5`);
    expect(redirect.headers["strict-transport-security"]).toBeUndefined();
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(redirect.headers[name], name).toBe(value);

    // The key reached the proxy through the engine's archive API, owned by the proxy's user, mode 600.
    const inspect = (await docker(["container", "inspect", PROXY])).stdout;
    const keyBody = first.privateKey.split("\n")[1]!;
    expect(inspect).not.toContain(keyBody);
    const listing = await docker(["exec", PROXY, "ls", "-ln", "/data/tls"]);
    const [uid, gid] = proxyProfile.user.split(":");
    expect(listing.stdout).toMatch(new RegExp(`-rw------- 1 ${uid} ${gid} .* key-[0-9a-f]{16}\\.pem`));
    expect((await docker(["exec", PROXY, "cat", "/config/caddy/autosave.json"])).stdout).not.toContain(keyBody);
  }, 120_000);

  it("certificate: a new chain and key are served after the switch, and the old key is removed", async () => {
    const before = (await docker(["exec", PROXY, "ls", "/data/tls"])).stdout.trim().split("\n");
    const second = await certificate("second");
    const outs = await switchTo({ mode: "certificate", domain: DOMAIN, httpsPort, ...second });
    const answer = await httpsRequest(`${base()}/healthz`, { ca: read(ca.caFile) });
    expect(answer.status).toBe(200);
    expect(answer.der).toBe(outs.servedCertificate);
    expect(answer.der).toBe(leafDer(second.certificate));
    expect(answer.der).not.toBe(leafDer(first.certificate));
    const after = (await docker(["exec", PROXY, "ls", "/data/tls"])).stdout.trim().split("\n");
    expect(after).toHaveLength(2);
    expect(after.some((name) => before.includes(name))).toBe(false);
  }, 120_000);

  it("internal: Caddy's own CA issues the certificate, and its root survives a replaced proxy", async () => {
    await switchTo({ mode: "internal", domain: DOMAIN, httpsPort });
    const root = (await docker(["exec", PROXY, "cat", "/data/caddy/pki/authorities/local/root.crt"])).stdout;
    const answer = await httpsRequest(`${base()}/healthz`, { ca: root });
    expect(answer.status).toBe(200);
    expect(factsOfDer(answer.der).issuer).toBe("CN=Caddy Local Authority - ECC Intermediate");

    await startProxy();
    await switchTo({ mode: "internal", domain: DOMAIN, httpsPort });
    expect((await docker(["exec", PROXY, "cat", "/data/caddy/pki/authorities/local/root.crt"])).stdout).toBe(root);
    // Trusting the first proxy's root is enough for the second.
    expect((await httpsRequest(`${base()}/healthz`, { ca: root })).status).toBe(200);
  }, 120_000);

  it("acme: Pebble issues the certificate after a real http-01 challenge through the proxy's HTTP port", async () => {
    const outs = await switchTo({ mode: "acme", domain: DOMAIN, httpsPort, acme: { directory: pebble.directory, email: "ops@example.com", caRoot: pebble.caRoot } });
    const issuedRoot = await pebble.issuedRoot();
    const answer = await httpsRequest(`${base()}/version`, { ca: issuedRoot });
    expect(answer.status).toBe(200);
    expect(answer.der).toBe(outs.servedCertificate);
    expect(factsOfDer(answer.der).issuer).toMatch(/^CN=Pebble Intermediate CA [0-9a-f]+$/);
    // Pebble's validation authority fetched the token from the proxy, over the HTTP port.
    expect(pebble.log()).toContain(`Attempting to validate w/ HTTP: http://${DOMAIN}:${httpPort}/.well-known/acme-challenge/`);
    expect(pebble.log()).not.toContain("Disabling VA challenge requests");
  }, 120_000);

  it("acme: a CA that cannot be reached fails the switch with Caddy's own reason, and the previous certificate keeps serving", async () => {
    const served = current!.servedCertificate;
    const closed = `https://${pebble.directory.split("/")[2]!.split(":")[0]}:${await freePort()}/dir`;
    const started = Date.now();
    const error = await switchTo({ mode: "acme", domain: DOMAIN, httpsPort, acme: { directory: closed, caRoot: pebble.caRoot } }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toContain(`the front proxy could not get a certificate for ${DOMAIN} from ${closed}`);
    expect(error?.message).toContain("connection refused");
    expect(error?.message).toContain("the proxy is back on its previous configuration");
    expect(Date.now() - started).toBeLessThan(30_000);
    const answer = await httpsRequest(`${base()}/healthz`, { ca: await pebble.issuedRoot() });
    expect(answer.status).toBe(200);
    expect(answer.der).toBe(served);
  }, 120_000);

  it("off and upstream: the proxy serves plain HTTP (both give it the same configuration; TLS, if any, ends in front)", async () => {
    await switchTo(undefined);
    const plain = await httpRequest(`http://127.0.0.1:${httpPort}/version`);
    expect(plain.status).toBe(200);
    expect(JSON.parse(plain.body)).toMatchObject({ release: release.containerId.slice(0, 12) });
    expect(current?.servedCertificate).toBeUndefined();
    expect(current?.tlsFiles).toBeUndefined();
    // Nothing answers HTTPS any more.
    await expect(httpsRequest(`${base()}/healthz`, { ca: read(ca.caFile), timeoutMs: 3000 })).rejects.toThrow();
  }, 120_000);
});
