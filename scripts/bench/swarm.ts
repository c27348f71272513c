/**
 * The Swarm target under load, with the real engine on a real two-node swarm (support/swarm.ts):
 * a loopback client asks `/version` 20 times a second through the front proxy while Swarm rolls 3
 * replicas to a rotated secret (staging) and to a promoted digest (prod). For each: requests, failed
 * (goal 0), p99 against the same load on the same stack with no update (goal at most 2x), and the
 * time from the start of `pulumi up` to every task on the new release. Then the time Swarm takes to
 * restore the replica count after a killed task, and the time from a refused release's first failing
 * task to `pulumi up`'s exit (goal: at most 30 s beyond Swarm's monitor window). Next to the
 * single-host figures of bench-results/switch.json when that file is there.
 * Writes bench-results/swarm.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, requireDockerEngine } from "../../support/docker";
import { requirePulumiCli, scratchProject } from "../../support/engine";
import { startLoadInChild, type LoadReport } from "../../support/load";
import { startPostgres } from "../../support/postgres";
import { LOCAL_REGISTRY_IMAGE, startRegistry } from "../../support/registry";
import { WORKER_STORAGE_DRIVER, firstFailedTask, runningTasks, startSwarm } from "../../support/swarm";
import { freePort } from "../../support/wait";
import { seconds, writeResults } from "./results";

const RPS = 20;
const BASELINE_SECONDS = 20;
const REPLICAS = 3;
const MONITOR_SECONDS = 5;
const GOALS = { failedRequests: 0, p99OverBaseline: 2, refusedBeyondMonitorSeconds: 30 };

/** Polls until `done` holds, and returns when it did (ms since the epoch). */
async function whenTrue(done: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await done()) return Date.now();
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error("timed out");
}

async function bench(): Promise<void> {
  const pulumiVersion = await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  const swarm = await startSwarm();
  const p = scratchProject();
  const [registry, pg] = await Promise.all([startRegistry({ address: swarm.managerAddress }), startPostgres({ alsoListenOn: swarm.managerAddress })]);
  try {
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const databaseUrl = `postgresql://${pg.user}:${pg.password}@${swarm.managerAddress}:${pg.port}/${pg.database}`;
    for (const stack of ["staging", "prod"] as const) {
      await p.pulumi(["stack", "init", stack]);
      p.writeStackFile(stack, {
        environment: stack,
        service: { hostPort: await freePort(), orchestrator: "swarm", replicas: REPLICAS, update: { monitorSeconds: MONITOR_SECONDS } },
        image: { ...(stack === "staging" ? { baseImage: LOCAL_PYTHON_BASE } : {}), name: `${p.project}/backend`, registry: { server: registry.server, username: registry.username } },
        proxy: { image: LOCAL_PROXY_IMAGE },
        ...(stack === "prod" ? { promotion: { fromStack: `organization/${p.project}/staging` } } : {}),
      });
      await p.setSecret(stack, "secrets.DATABASE_URL", databaseUrl);
      await p.setSecret(stack, "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
      await p.setSecret(stack, "registryPassword", registry.password);
    }
    const staging = await p.stack("staging");
    const prod = await p.stack("prod");
    await staging.up();
    await prod.up();
    const service = (stack: string) => `${p.project}-${stack}-app`;
    const url = async (stack: typeof staging) => String((await stack.outputs()).url?.value);

    const quietly = async (base: string) => {
      const quiet = await startLoadInChild(`${base}/version`, { rps: RPS });
      await new Promise((resolve) => setTimeout(resolve, BASELINE_SECONDS * 1000));
      const report = await quiet.stop();
      return { seconds: BASELINE_SECONDS, requests: report.sent, failed: report.failed.length, p50Ms: report.p50Ms, p99Ms: report.p99Ms };
    };
    const baseline = { staging: await quietly(await url(staging)), prod: await quietly(await url(prod)) };

    /** One rolling update under load; "every task on the new release" is watched from the manager while it runs. */
    const rolling = async (stack: "staging" | "prod", update: () => Promise<unknown>) => {
      const name = service(stack);
      const before = new Set((await runningTasks(name)).map((t) => t.release));
      const seen: { at: number; releases: string[] }[] = [];
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          const tasks = await runningTasks(name).catch(() => []);
          seen.push({ at: Date.now(), releases: tasks.length === REPLICAS ? tasks.map((t) => t.release) : [] });
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      })();
      const load = await startLoadInChild(`${await url(stack === "staging" ? staging : prod)}/version`, { rps: RPS });
      const started = Date.now();
      await update();
      const updateMs = Date.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const report: LoadReport = await load.stop();
      watching = false;
      await watcher;
      const allNew = seen.find((s) => s.releases.length === REPLICAS && s.releases.every((r) => !before.has(r)));
      return {
        requests: report.sent,
        failed: report.failed.length,
        p50Ms: report.p50Ms,
        p99Ms: report.p99Ms,
        pulumiUpSeconds: seconds(updateMs),
        upStartToEveryTaskOnNewReleaseSeconds: allNew === undefined ? null : seconds(allNew.at - started),
      };
    };

    // Rotated the way a user does, so the figures keep what the rotation's preview said (names only).
    const rotate = await p.npm("rotate", ["--stack", "staging", "SECRET_KEY", "--generate"]);
    if (rotate.code !== 0) throw new Error(`npm run rotate failed: ${rotate.stderr}`);
    const rotationPreview = rotate.stdout.split("\n").filter((l) => /^(No container|Other changes| {2}\S|Summary)/.test(l));
    const rotation = { ...(await rolling("staging", () => staging.up())), preview: rotationPreview };
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), "# a new release\n");
    await staging.up();
    const promotion = await rolling("prod", () => prod.up());

    // A killed task: from the kill until Swarm runs the replica count again.
    const victim = (await runningTasks(service("staging"))).find((t) => t.node === swarm.workerNodeId) ?? (await runningTasks(service("staging")))[0]!;
    const killedAt = Date.now();
    await (victim.node === swarm.workerNodeId ? swarm.worker(["kill", victim.container]) : docker(["kill", victim.container]));
    const restoredAt = await whenTrue(async () => {
      const tasks = await runningTasks(service("staging"));
      return tasks.length === REPLICAS && !tasks.some((t) => t.container === victim.container);
    }, 120_000);

    // A refused release: from its first failing task to pulumi up's exit.
    const serving = (await runningTasks(service("staging")))[0]!.release;
    await p.setConfig("staging", "service.env.LOG_LEVEL", "verbose");
    const refusedStarted = Date.now();
    const refusedUp = await p.pulumi(["up", "--yes", "--skip-preview", "--stack", "staging"]);
    const refusedEnded = Date.now();
    if (refusedUp.code === 0) throw new Error("the refused release was deployed");
    const firstFailure = await firstFailedTask(service("staging"), serving);
    // What pulumi up said about it (the rollout check's error, from its first line on).
    const said = (refusedUp.stdout + refusedUp.stderr).split("\n");
    const from = said.findIndex((l) => l.trim().startsWith("error: Rollout of"));
    const refusedMessage = from < 0 ? said.slice(-12) : said.slice(from, from + 8).map((l) => l.trimEnd());
    await p.pulumi(["config", "rm", "--path", "service.env.LOG_LEVEL", "--stack", "staging"]);
    await prod.destroy();
    await staging.destroy();

    const singleHostFile = path.resolve(__dirname, "..", "..", "bench-results", "switch.json");
    const singleHost = fs.existsSync(singleHostFile) ? (JSON.parse(fs.readFileSync(singleHostFile, "utf8")) as Record<string, unknown>) : undefined;
    const refusedToExit = firstFailure === undefined ? null : seconds(refusedEnded - firstFailure);
    const result = {
      benchmark: "the Swarm target under load through the front proxy (real Pulumi engine, a two-node swarm, Caddy 2 dynamic upstreams)",
      pulumi: pulumiVersion,
      node: process.version,
      swarm: { nodes: 2, replicas: REPLICAS, monitorSeconds: MONITOR_SECONDS, parallelism: 1, workerStorageDriver: WORKER_STORAGE_DRIVER },
      load: { path: "/version", requestsPerSecond: RPS },
      baseline,
      rotation,
      promotion,
      killedTask: { restoreSeconds: seconds(restoredAt - killedAt), node: victim.node === swarm.workerNodeId ? "worker" : "manager" },
      refusedRelease: {
        firstFailingTaskToPulumiExitSeconds: refusedToExit,
        message: refusedMessage,
        wholeUpdateSeconds: seconds(refusedEnded - refusedStarted),
        monitorSeconds: MONITOR_SECONDS,
      },
      goals: {
        failedRequests: GOALS.failedRequests,
        p99AtMostTimesBaseline: GOALS.p99OverBaseline,
        refusedReleaseToExitAtMostSeconds: MONITOR_SECONDS + GOALS.refusedBeyondMonitorSeconds,
      },
      met: {
        rotation: rotation.failed === 0 && rotation.p99Ms <= GOALS.p99OverBaseline * Math.max(1, baseline.staging.p99Ms),
        promotion: promotion.failed === 0 && promotion.p99Ms <= GOALS.p99OverBaseline * Math.max(1, baseline.prod.p99Ms),
        refusedRelease: refusedToExit !== null && refusedToExit <= MONITOR_SECONDS + GOALS.refusedBeyondMonitorSeconds,
      },
      singleHost:
        singleHost === undefined
          ? "bench-results/switch.json not found: run `npm run bench -- switch` for the comparison"
          : { rotation: singleHost.rotation, promotion: singleHost.promotion, baseline: singleHost.baseline },
    };
    writeResults("swarm", result);
  } finally {
    p.cleanup();
    await swarm.stop();
    await Promise.all([registry.stop(), pg.stop()]);
  }
}

bench().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
