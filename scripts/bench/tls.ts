/**
 * HTTPS at the front proxy, with the real engine, on one staging stack: the time from the start of a
 * fresh `pulumi up` in `acme` mode (against Pebble, a real http-01 challenge) to the first HTTPS
 * answer; the requests lost while its certificate is replaced under load (goal 0); and the p50/p99
 * latency of HTTPS through the proxy against plain HTTP through the proxy of the same stack (goal:
 * p99 within 1.5x), the same load (`/version`, 20 a second, over keep-alive connections) from a
 * process of its own. Writes bench-results/tls.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, dockerHostAddress, requireDockerEngine } from "../../support/docker";
import { requirePulumiCli, scratchProject } from "../../support/engine";
import { startLoadInChild, type LoadOptions } from "../../support/load";
import { startPebble } from "../../support/pebble";
import { makeCa, signServerCertificate } from "../../support/throwawayCa";
import { freePort, httpsRequest } from "../../support/wait";
import { seconds, writeResults } from "./results";

const RPS = 20;
const LOAD_SECONDS = 20;
const GOALS = { lostRequests: 0, httpsP99OverHttp: 1.5 };

async function bench(): Promise<void> {
  const pulumiVersion = await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  const p = scratchProject();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "bd-bench-tls-"));
  const [httpPort, httpsPort] = [await freePort(), await freePort()];
  const domain = `bench.${randomBytes(3).toString("hex")}.test`;
  const pebble = await startPebble({ address: await dockerHostAddress(), httpPort });
  try {
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    p.writeStackFile("staging", {
      environment: "staging",
      service: { hostPort: httpPort },
      image: { baseImage: LOCAL_PYTHON_BASE, name: p.project },
      proxy: { image: LOCAL_PROXY_IMAGE, domain, httpsPort, tls: { mode: "acme", acme: { directory: pebble.directory, caRoot: pebble.caRoot } } },
    });
    // From here on the stack file holds secrets: changed with `pulumi config`, as users do.
    const config = async (args: string[], stdin?: string) => {
      const res = await p.pulumi(["config", ...args, "--stack", "staging"], stdin === undefined ? {} : { stdin });
      if (res.code !== 0) throw new Error(`pulumi config ${args.join(" ")} failed: ${res.stderr}`);
    };
    const stack = await p.stack("staging");
    await p.setSecret("staging", "secrets.DATABASE_URL", "sqlite:////data/app.db");
    await p.setSecret("staging", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    const url = `https://${domain}:${httpsPort}`;

    // 1. A fresh acme deploy: from the start of `pulumi up` to the first HTTPS answer through the proxy.
    const root = await pebble.issuedRoot();
    const started = Date.now();
    let firstAnswerMs: number | undefined;
    let polling = true;
    const poll = (async () => {
      while (polling && firstAnswerMs === undefined) {
        const answer = await httpsRequest(`${url}/healthz`, { ca: root, timeoutMs: 2000 }).catch(() => undefined);
        if (answer?.status === 200) firstAnswerMs = Date.now() - started;
        else await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    await stack.up();
    const upMs = Date.now() - started;
    polling = false;
    await poll;

    // 2. A certificate of the user's, then another one under load.
    const ca = await makeCa(work, "tls bench");
    const issue = async (name: string) => {
      const made = await signServerCertificate(ca, name, { commonName: domain, dnsNames: [domain] });
      return { chain: `${fs.readFileSync(made.certFile, "utf8").trim()}\n${fs.readFileSync(ca.caFile, "utf8").trim()}`, key: fs.readFileSync(made.keyFile, "utf8") };
    };
    const certificate = async (name: string) => {
      const { chain, key } = await issue(name);
      await config(["set", "--path", "proxy.tls.certificate"], chain);
      await config(["set", "--secret", "tlsPrivateKey"], key);
    };
    await config(["rm", "--path", "proxy.tls.acme"]);
    await config(["set", "--path", "proxy.tls.mode", "certificate"]);
    await certificate("first");
    await stack.up();
    const trusted: LoadOptions = { rps: RPS, ca: fs.readFileSync(ca.caFile, "utf8"), connectTo: "127.0.0.1" };
    const quietly = async (base: string, options: LoadOptions) => {
      const load = await startLoadInChild(`${base}/version`, options);
      await new Promise((resolve) => setTimeout(resolve, LOAD_SECONDS * 1000));
      const report = await load.stop();
      return { seconds: LOAD_SECONDS, requests: report.sent, failed: report.failed.length, p50Ms: report.p50Ms, p99Ms: report.p99Ms };
    };
    const httpsLoad = await quietly(url, trusted);

    await certificate("second");
    const change = await startLoadInChild(`${url}/version`, trusted);
    const changeStarted = Date.now();
    await stack.up();
    const changeMs = Date.now() - changeStarted;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const changed = await change.stop();

    // 3. The same stack with plain HTTP at the proxy.
    for (const key of ["proxy.tls", "proxy.domain", "proxy.httpsPort"]) await config(["rm", "--path", key]);
    await config(["rm", "tlsPrivateKey"]);
    await stack.up();
    const httpLoad = await quietly(`http://127.0.0.1:${httpPort}`, { rps: RPS });
    await stack.destroy();

    const ratio = Math.round((httpsLoad.p99Ms / Math.max(1, httpLoad.p99Ms)) * 100) / 100;
    writeResults("tls", {
      benchmark: "HTTPS at the front proxy (real Pulumi engine, Docker, Caddy 2, Pebble)",
      pulumi: pulumiVersion,
      node: process.version,
      acmeFreshDeploy: { upStartToFirstHttpsAnswerSeconds: firstAnswerMs === undefined ? null : seconds(firstAnswerMs), pulumiUpSeconds: seconds(upMs) },
      certificateChangeUnderLoad: {
        requests: changed.sent,
        lost: changed.failed.length,
        p50Ms: changed.p50Ms,
        p99Ms: changed.p99Ms,
        pulumiUpSeconds: seconds(changeMs),
      },
      latency: { load: { path: "/version", requestsPerSecond: RPS, keepAlive: true }, https: httpsLoad, http: httpLoad, httpsP99OverHttp: ratio },
      goals: { lostRequests: GOALS.lostRequests, httpsP99AtMostTimesHttp: GOALS.httpsP99OverHttp },
      met: { lostRequests: changed.failed.length === GOALS.lostRequests, latency: ratio <= GOALS.httpsP99OverHttp },
    });
  } finally {
    await pebble.stop();
    fs.rmSync(work, { recursive: true, force: true });
    p.cleanup();
  }
}

bench().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
