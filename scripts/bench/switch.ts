/**
 * Releases under load, with the real engine: a loopback client asks `/version` 20 times a second
 * through the front proxy while a secret rotation (staging), a prod promotion of a new digest, and a
 * rollback of prod run. For each: failed requests (goal 0), p99 latency against the same load on the
 * same stack with no update (goal at most 2x), and the time from the start of the update to the first
 * answer from the new release. The load runs in a process of its own, so that this one's event loop
 * (the Automation API streaming the update's events) times nothing. Writes bench-results/switch.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, dockerHostAddress, requireDockerEngine } from "../../support/docker";
import { requirePulumiCli, scratchProject } from "../../support/engine";
import { startLoadInChild, type LoadReport } from "../../support/load";
import { startPostgres } from "../../support/postgres";
import { freePort, httpRequest } from "../../support/wait";
import { seconds, writeResults } from "./results";

const RPS = 20;
const BASELINE_SECONDS = 20;
const GOALS = { failedRequests: 0, p99OverBaseline: 2 };


/** The figures of one update under load. */
function figures(report: LoadReport, started: number, before: string) {
  const firstNew = report.samples.find((s) => s.status === 200 && s.release !== undefined && s.release !== before);
  return {
    requests: report.sent,
    failed: report.failed.length,
    p50Ms: report.p50Ms,
    p99Ms: report.p99Ms,
    updateStartToNewReleaseSeconds: firstNew === undefined ? null : seconds(firstNew.at - started),
    releasesServed: [...new Set(report.samples.map((s) => s.release))].length,
  };
}

async function bench(): Promise<void> {
  const pulumiVersion = await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  const p = scratchProject();
  const host = await dockerHostAddress();
  const pg = await startPostgres({ alsoListenOn: host });
  try {
    const common = { proxy: { image: LOCAL_PROXY_IMAGE }, image: { name: p.project } };
    p.writeStackFile("staging", { ...common, environment: "staging", service: { hostPort: await freePort() }, image: { ...common.image, baseImage: LOCAL_PYTHON_BASE } });
    // TLS ends in front (a prod stack must choose): the proxy serves plain HTTP, as before.
    p.writeStackFile("prod", { ...common, proxy: { ...common.proxy, tls: { mode: "upstream" } }, environment: "prod", service: { hostPort: await freePort() }, promotion: { fromStack: `organization/${p.project}/staging` } });
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const staging = await p.stack("staging");
    const prod = await p.stack("prod");
    await p.setSecret("staging", "secrets.DATABASE_URL", "sqlite:////data/app.db");
    await p.setSecret("staging", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    await p.setSecret("prod", "secrets.DATABASE_URL", `postgresql://${pg.user}:${pg.password}@${host}:${pg.port}/${pg.database}`);
    await p.setSecret("prod", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    await staging.up();
    await prod.up();
    const url = async (stack: typeof staging) => String((await stack.outputs()).url?.value);
    const release = async (base: string) => (JSON.parse((await httpRequest(`${base}/version`)).body) as { release: string }).release;
    const stagingUrl = await url(staging);
    const prodUrl = await url(prod);

    // The same load on each stack with nothing happening: what its update is measured against.
    const quietly = async (base: string) => {
      const quiet = await startLoadInChild(`${base}/version`, { rps: RPS });
      await new Promise((resolve) => setTimeout(resolve, BASELINE_SECONDS * 1000));
      const report = await quiet.stop();
      return { seconds: BASELINE_SECONDS, requests: report.sent, failed: report.failed.length, p50Ms: report.p50Ms, p99Ms: report.p99Ms };
    };
    const baseline = { staging: await quietly(stagingUrl), prod: await quietly(prodUrl) };

    const underLoad = async (base: string, update: () => Promise<unknown>) => {
      const before = await release(base);
      const load = await startLoadInChild(`${base}/version`, { rps: RPS });
      const started = Date.now();
      await update();
      const updateMs = Date.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return { ...figures(await load.stop(), started, before), pulumiUpSeconds: seconds(updateMs) };
    };

    await p.setSecret("staging", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    const rotation = await underLoad(stagingUrl, () => staging.up());
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), "# a new release\n");
    await staging.up();
    const promotion = await underLoad(prodUrl, () => prod.up());
    const rollback = await underLoad(prodUrl, async () => {
      const res = await p.npm("rollback", ["prod", "--", "--yes"]);
      if (res.code !== 0) throw new Error(`npm run rollback failed: ${res.stderr}`);
    });
    await prod.destroy();
    await staging.destroy();

    const updates = { rotation, promotion, rollback };
    const stackOf = { rotation: "staging", promotion: "prod", rollback: "prod" } as const;
    const result = {
      benchmark: "releases under load through the front proxy (real Pulumi engine, Docker, Caddy 2)",
      pulumi: pulumiVersion,
      node: process.version,
      load: { path: "/version", requestsPerSecond: RPS },
      baseline,
      ...updates,
      goals: { failedRequests: GOALS.failedRequests, p99AtMostTimesBaseline: GOALS.p99OverBaseline },
      met: Object.fromEntries(
        Object.entries(updates).map(([name, u]) => [name, u.failed === GOALS.failedRequests && u.p99Ms <= GOALS.p99OverBaseline * Math.max(1, baseline[stackOf[name as keyof typeof updates]].p99Ms)]),
      ),
    };
    writeResults("switch", result);
  } finally {
    await pg.stop();
    p.cleanup();
  }
}

bench().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
