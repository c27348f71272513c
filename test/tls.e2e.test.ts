/**
 * HTTPS at the front proxy, run by the real Pulumi engine against the real Docker engine: a staging
 * stack in `certificate` mode (a CA the test makes), its certificate replaced under HTTPS load with
 * no failed request, then in `acme` mode against Pebble with a real http-01 challenge through the
 * proxy's HTTP port, an ACME CA that cannot be reached (Caddy's reason, the previous certificate
 * keeps serving); prod refused with `off` before anything of it exists, then deployed with
 * `upstream`; the pull-request comment from real previews; and the private key in clear text
 * nowhere (state, outputs, update output, `docker inspect`, preview documents, the comment). The
 * scenarios share two stacks and run in order. Needs the Pulumi CLI, the Docker engine, the local
 * images, openssl, PostgreSQL's binaries and Pebble; fails (never skips) without them.
 *
 * `CAPTURE_FIXTURES=1` also writes the preview documents it reads (secrets and paths redacted) to
 * test/fixtures/preview/.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StackOutputs } from "../components/contract";
import { factsOfDer } from "../components/proxy/certificates";
import { leafDer } from "../components/proxy/tlsProbe";
import { readTlsStatus } from "../components/proxy/tlsStatus";
import { readVerdict } from "../components/promotion/reasons";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, dockerHostAddress, namedAfter, removeNamedAfter, requireDockerEngine } from "../support/docker";
import { REPO, requirePulumiCli, run, scratchProject, type ScratchProject } from "../support/engine";
import { startLoad } from "../support/load";
import { startPebble, type Pebble } from "../support/pebble";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { makeCa, privateKeyLines, signServerCertificate, type TestCa } from "../support/throwawayCa";
import { freePort, httpRequest, httpsRequest } from "../support/wait";

const MINUTE = 60_000;
const CAPTURE = process.env.CAPTURE_FIXTURES === "1";
const HEX = randomBytes(3).toString("hex");
const STAGING_DOMAIN = `staging.${HEX}.test`;
const PROD_DOMAIN = `api.${HEX}.test`;

let p: ScratchProject;
let pg: PostgresCluster;
let pebble: Pebble;
let ca: TestCa;
let staging: Stack;
let prod: Stack;
let httpPort: number;
let httpsPort: number;
let prodPort: number;
const work = fs.mkdtempSync(path.join(os.tmpdir(), "bd-tls-e2e-"));
/** Every secret the stacks ever held; none may show up in clear text anywhere but the release's environment, where secrets go. */
const secrets: string[] = [];
/** Every line of the body of every TLS private key the stacks held: in clear text nowhere at all. */
const keyLines: string[] = [];
/** Everything the updates printed. */
let printed = "";

const plain = async (stack: Stack) => Object.fromEntries(Object.entries(await stack.outputs()).map(([k, v]) => [k, v.value])) as Record<string, unknown>;
const read = (file: string) => fs.readFileSync(file, "utf8").trim();

/** A chain (leaf, then the CA) and its key for the staging domain, signed by the test's CA. */
async function certificate(name: string): Promise<{ chain: string; key: string }> {
  const made = await signServerCertificate(ca, name, { commonName: STAGING_DOMAIN, dnsNames: [STAGING_DOMAIN] });
  const key = read(made.keyFile);
  // Every line of the key's body: not one may appear anywhere.
  keyLines.push(...privateKeyLines(key));
  return { chain: `${read(made.certFile)}\n${read(ca.caFile)}`, key };
}

/** The way users set a PEM: on `pulumi config set`'s stdin. */
async function setFromStdin(stack: string, key: string, value: string, secret = false): Promise<void> {
  const res = await p.pulumi(["config", "set", ...(secret ? ["--secret"] : []), "--path", key, "--stack", stack], { stdin: value });
  expect(res.code, res.stderr).toBe(0);
}

async function up(stack: Stack): Promise<void> {
  await stack.up({ onOutput: (out) => (printed += out) });
}

function expectNoSecret(text: string, where: string, values: readonly string[] = [...secrets, ...keyLines]): void {
  for (const value of values) expect(text.includes(value), `a secret value appears in ${where}`).toBe(false);
}

/** `docker inspect` and the logs of every container of this project. */
async function inspectAll(): Promise<string> {
  const ids = (await docker(["ps", "-a", "-q", "--filter", `name=^${p.project}-`])).stdout.trim().split("\n").filter((id) => id !== "");
  if (ids.length === 0) return "[]";
  const logs = await Promise.all(ids.map(async (id) => { const l = await docker(["logs", id]); return l.stdout + l.stderr; }));
  return [(await docker(["container", "inspect", ...ids])).stdout, ...logs].join("\n");
}

/** Every file of the project's state backend: the stacks, their history, backups. */
function stateFiles(): string {
  const dir = path.join(p.dir, ".pulumi-state");
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .map((name) => path.join(dir, name))
    .filter((file) => fs.statSync(file).isFile())
    .map((file) => fs.readFileSync(file, "utf8"))
    .join("\n");
}

/** The containers, networks and volumes of this project, or of one of its stacks. */
const leftovers = (stack?: string) => namedAfter(stack === undefined ? `${p.project}-` : `${p.project}-${stack}-`);

/** `pulumi preview --json` of a stack: its file, exit code and document. */
async function previewJson(stack: string, name: string): Promise<{ file: string; code: number; doc: { diagnostics?: { message?: string }[] } }> {
  const res = await p.pulumi(["preview", "--json", "--stack", stack]);
  const file = path.join(p.dir, `${name}.json`);
  fs.writeFileSync(file, res.stdout);
  if (CAPTURE) {
    let text = res.stdout;
    for (const value of [...secrets, ...keyLines]) text = text.split(value).join("[secret]");
    text = text.split(p.dir).join("/project").split(p.project).join("backend-delivery").split(REPO).join("/repository");
    const doc = JSON.parse(text, (key, value: unknown) => (key === "__provider" ? "[provider]" : value)) as unknown;
    fs.writeFileSync(path.join(__dirname, "fixtures", "preview", `${name}.json`), `${JSON.stringify(doc, null, 2)}\n`);
  }
  return { file, code: res.code, doc: JSON.parse(res.stdout) as { diagnostics?: { message?: string }[] } };
}

const messages = (doc: { diagnostics?: { message?: string }[] }) => (doc.diagnostics ?? []).map((d) => d.message ?? "");

beforeAll(async () => {
  await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  p = scratchProject();
  [httpPort, httpsPort, prodPort] = [await freePort(), await freePort(), await freePort()];
  const hostAddress = await dockerHostAddress();
  // Pebble's validation authority asks the staging proxy's HTTP port; every name resolves to loopback.
  pebble = await startPebble({ address: hostAddress, httpPort });
  pg = await startPostgres({ alsoListenOn: hostAddress });
  secrets.push(pg.password);
  ca = await makeCa(work, "tls e2e");
  fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
  fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });

  const first = await certificate("first");
  p.writeStackFile("staging", {
    environment: "staging",
    service: { hostPort: httpPort, env: { LOG_LEVEL: "INFO" } },
    image: { baseImage: LOCAL_PYTHON_BASE, name: p.project },
    proxy: { image: LOCAL_PROXY_IMAGE, domain: STAGING_DOMAIN, httpsPort, tls: { mode: "certificate", certificate: first.chain } },
  });
  p.writeStackFile("prod", {
    environment: "prod",
    service: { hostPort: prodPort },
    image: { name: p.project },
    proxy: { image: LOCAL_PROXY_IMAGE, tls: { mode: "off" } },
    promotion: { fromStack: `organization/${p.project}/staging` },
  });
  staging = await p.stack("staging");
  prod = await p.stack("prod");
  const stagingKey = randomBytes(32).toString("base64url");
  const prodKey = randomBytes(32).toString("base64url");
  const databaseUrl = `postgresql://${pg.user}:${pg.password}@${hostAddress}:${pg.port}/${pg.database}`;
  secrets.push(stagingKey, prodKey, databaseUrl);
  await p.setSecret("staging", "secrets.DATABASE_URL", "sqlite:////data/app.db");
  await p.setSecret("staging", "secrets.SECRET_KEY", stagingKey);
  await setFromStdin("staging", "tlsPrivateKey", first.key, true);
  await p.setSecret("prod", "secrets.DATABASE_URL", databaseUrl);
  await p.setSecret("prod", "secrets.SECRET_KEY", prodKey);
}, 5 * MINUTE);

afterAll(async () => {
  for (const stack of [prod, staging]) await stack?.destroy().catch(() => undefined);
  if (p !== undefined) {
    await removeNamedAfter(`${p.project}-`);
    p.cleanup();
  }
  await pebble?.stop();
  await pg?.stop();
  fs.rmSync(work, { recursive: true, force: true });
}, 10 * MINUTE);

describe("HTTPS at the front proxy with the real Pulumi engine", () => {
  it("certificate: staging serves the user's chain at https://<domain>:<port>, the tls output is what the proxy served, and nothing is left to change", async () => {
    await up(staging);
    const outputs = StackOutputs.parse(await plain(staging));
    expect(outputs.url).toBe(`https://${STAGING_DOMAIN}:${httpsPort}`);
    const answer = await httpsRequest(`${outputs.url}/version`, { ca: read(ca.caFile), alpn: true });
    expect(answer.status).toBe(200);
    expect(answer.alpn).toBe("h2");
    expect(answer.headers["strict-transport-security"]).toBe("max-age=63072000; includeSubDomains");
    const served = factsOfDer(answer.der);
    expect(outputs.tls).toEqual({ mode: "certificate", domain: STAGING_DOMAIN, issuer: "CN=throwaway test CA for tls e2e", notAfter: served.notAfter, fingerprint: served.fingerprint });
    // Plain HTTP on the stack's host port redirects, for every path.
    const redirect = await httpRequest(`http://127.0.0.1:${httpPort}/readyz`, { headers: { host: STAGING_DOMAIN } });
    expect([redirect.status, redirect.headers.location]).toEqual([308, `https://${STAGING_DOMAIN}:${httpsPort}/readyz`]);
    await staging.preview({ expectNoChanges: true });
  }, 10 * MINUTE);

  it("certificate: a new chain and key, set on stdin, are served after an update under HTTPS load, with no failed request", async () => {
    const before = String((await plain(staging)).url);
    const second = await certificate("second");
    await setFromStdin("staging", "proxy.tls.certificate", second.chain);
    await setFromStdin("staging", "tlsPrivateKey", second.key, true);
    const load = startLoad(`${before}/version`, { rps: 20, maxSeconds: 300, ca: read(ca.caFile), connectTo: "127.0.0.1" });
    try {
      await up(staging);
    } finally {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const report = await load.stop();
    expect(report.failed, JSON.stringify(report.failed.slice(0, 5))).toEqual([]);
    expect(report.sent).toBeGreaterThan(20);
    const answer = await httpsRequest(`${before}/healthz`, { ca: read(ca.caFile) });
    expect(answer.der).toBe(leafDer(second.chain));
    expect((await plain(staging)).tls).toMatchObject({ mode: "certificate", fingerprint: answer.fingerprint });
    // The first key's file went with the first certificate.
    const proxy = `${p.project}-staging-proxy`;
    expect((await docker(["exec", proxy, "ls", "/data/tls"])).stdout.trim().split("\n")).toHaveLength(2);
  }, 10 * MINUTE);

  it("acme: Pebble issues staging's certificate after a real http-01 challenge through the proxy's HTTP port", async () => {
    await p.pulumi(["config", "rm", "--path", "proxy.tls.certificate", "--stack", "staging"]);
    await p.pulumi(["config", "rm", "tlsPrivateKey", "--stack", "staging"]);
    await p.setConfig("staging", "proxy.tls.mode", "acme");
    await p.setConfig("staging", "proxy.tls.acme.directory", pebble.directory);
    await p.setConfig("staging", "proxy.tls.acme.email", "ops@example.com");
    await setFromStdin("staging", "proxy.tls.acme.caRoot", pebble.caRoot);
    await up(staging);
    const outputs = StackOutputs.parse(await plain(staging));
    const answer = await httpsRequest(`${outputs.url}/version`, { ca: await pebble.issuedRoot() });
    expect(answer.status).toBe(200);
    expect(outputs.tls).toMatchObject({ mode: "acme", fingerprint: answer.fingerprint, issuer: expect.stringMatching(/^CN=Pebble Intermediate CA [0-9a-f]+$/) as unknown });
    expect(pebble.log()).toContain(`Attempting to validate w/ HTTP: http://${STAGING_DOMAIN}:${httpPort}/.well-known/acme-challenge/`);
  }, 10 * MINUTE);

  it("acme: a CA that cannot be reached fails `pulumi up` with Caddy's own reason, and the previous certificate keeps serving", async () => {
    const before = await plain(staging);
    const closed = pebble.directory.replace(/:\d+\/dir$/, `:${await freePort()}/dir`);
    await p.setConfig("staging", "proxy.tls.acme.directory", closed);
    try {
      const res = await p.pulumi(["up", "--yes", "--stack", "staging"]);
      const text = res.stdout + res.stderr;
      printed += text;
      expect(res.code, text).not.toBe(0);
      expect(text).toContain(`the front proxy could not get a certificate for ${STAGING_DOMAIN} from ${closed}`);
      expect(text).toContain("connect: connection refused");
      expect(text).toContain("the proxy is back on its previous configuration");
      expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      const answer = await httpsRequest(`${String(before.url)}/healthz`, { ca: await pebble.issuedRoot() });
      expect(answer.fingerprint).toBe((before.tls as { fingerprint: string }).fingerprint);
      expect(await plain(staging)).toEqual(before);
    } finally {
      await p.setConfig("staging", "proxy.tls.acme.directory", pebble.directory);
    }
  }, 10 * MINUTE);

  it("prod: refused with `off` (or no choice) before anything of it exists, naming proxy.tls.mode and each choice", async () => {
    for (const unset of [false, true]) {
      if (unset) await p.pulumi(["config", "rm", "--path", "proxy.tls", "--stack", "prod"]);
      const res = await p.pulumi(["up", "--yes", "--stack", "prod"]);
      const text = res.stdout + res.stderr;
      expect(res.code).not.toBe(0);
      expect(text).toContain('Stack "prod" config is invalid (1 problem); nothing was changed');
      expect(text).toContain("a prod stack must choose how its TLS ends: acme, certificate or upstream");
      expect(text).toContain("→ at proxy.tls.mode");
      for (const mode of ["acme", "certificate", "upstream"]) expect(text).toContain(`pulumi config set --stack prod --path 'proxy.tls.mode' ${mode}`);
      expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    }
    expect(await leftovers("prod")).toEqual([]);
  }, 10 * MINUTE);

  it("prod: deployed with `upstream`, the proxy serving plain HTTP behind a load balancer, its url the public name", async () => {
    await p.setConfig("prod", "proxy.tls.mode", "upstream");
    await p.setConfig("prod", "proxy.domain", PROD_DOMAIN);
    await up(prod);
    const outputs = StackOutputs.parse(await plain(prod));
    expect(outputs.url).toBe(`https://${PROD_DOMAIN}`);
    expect(outputs.tls).toEqual({ mode: "upstream", domain: PROD_DOMAIN });
    expect(outputs.imageDigest).toBe((await plain(staging)).imageDigest);
    // What the load balancer forwards: plain HTTP on the loopback port, the public name as Host.
    const answer = await httpRequest(`http://127.0.0.1:${prodPort}/readyz`, { headers: { host: PROD_DOMAIN } });
    expect(answer.status).toBe(200);
  }, 10 * MINUTE);

  it("the pull-request comment shows each stack's TLS mode and remaining validity, and no key", async () => {
    const stagingDoc = await previewJson("staging", "tls-staging-acme");
    const prodDoc = await previewJson("prod", "tls-prod-upstream");
    expect([stagingDoc.code, prodDoc.code]).toEqual([0, 0]);
    const status = readTlsStatus(messages(stagingDoc.doc));
    expect(status).toMatchObject({ mode: "acme", domain: STAGING_DOMAIN, served: { fingerprint: ((await plain(staging)).tls as { fingerprint: string }).fingerprint } });
    expect(readVerdict(messages(prodDoc.doc))?.allowed).toBe(true);
    const secretsFiles: string[] = [];
    for (const stack of ["staging", "prod"]) {
      const file = path.join(p.dir, `${stack}-config.json`);
      fs.writeFileSync(file, (await p.pulumi(["config", "--show-secrets", "--json", "--stack", stack])).stdout, { mode: 0o600 });
      secretsFiles.push("--secrets-file", file);
    }
    const res = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), `--stack=staging=${stagingDoc.file}`, `--stack=prod=${prodDoc.file}`, ...secretsFiles, "--dry-run"], { cwd: p.dir, env: p.env });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(new RegExp(`\\*\\*TLS\\*\\*: \`acme\` for \`${STAGING_DOMAIN.replace(/\./g, "\\.")}\` — serves a certificate from \`CN=Pebble Intermediate CA [0-9a-f]+\`, valid \\d+\\.\\d more days`));
    expect(res.stdout).toContain(`**TLS**: \`upstream\` for \`${PROD_DOMAIN}\` — ended by the load balancer in front`);
    for (const text of [res.stdout, fs.readFileSync(stagingDoc.file, "utf8"), fs.readFileSync(prodDoc.file, "utf8")]) expectNoSecret(text, "the previews and the comment");
  }, 10 * MINUTE);

  it("the private key is in clear text nowhere: state (and its history), outputs, update output, docker inspect and logs", async () => {
    expectNoSecret(stateFiles(), "the state backend");
    expectNoSecret(JSON.stringify([await staging.outputs(), await prod.outputs()]), "the stack outputs");
    expectNoSecret(printed, "the updates' output");
    // The release's environment holds the stack's secrets by design; the key reaches no container's settings or log.
    expectNoSecret(await inspectAll(), "docker inspect and the containers' logs", keyLines);
  }, 10 * MINUTE);

  it("destroy: no container, network or volume is left, the proxy's data volume included", async () => {
    await prod.destroy();
    await staging.destroy();
    expect(await leftovers()).toEqual([]);
  }, 10 * MINUTE);
});
