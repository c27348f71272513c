/**
 * Real `pulumi up` wall times, with the real engine and the real Docker engine, on a scratch copy of
 * the program: a first staging deploy (image layers already cached), a no-op staging update (goal:
 * 0 resources changed, at most 10 s), a prod promotion (first deploy, then a new digest), and the time
 * from a release's container exiting (a setting the backend refuses) to `pulumi up` exiting (goal:
 * at most 15 s). Writes bench-results/engine.json.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, buildImage, docker, dockerHostAddress, firstExitOf, removeImages, requireDockerEngine, uniqueName } from "../../support/docker";
import { REPO, requirePulumiCli, scratchProject } from "../../support/engine";
import { startPostgres } from "../../support/postgres";
import { freePort } from "../../support/wait";
import { seconds, writeResults } from "./results";

const NOOP_RUNS = 3;
const FAILURE_RUNS = 3;
const GOALS = { noopMs: 10_000, noopChanged: 0, exitToFailureMs: 15_000 };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function bench(): Promise<void> {
  const pulumiVersion = await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  // "Image layers cached": the same Dockerfile and lock built once before anything is timed.
  const warmTag = `${uniqueName("bench-engine-warm")}:latest`;
  await buildImage({ context: path.join(REPO, "backend"), tag: warmTag, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } });
  await removeImages(warmTag);

  const p = scratchProject();
  const pg = await startPostgres({ alsoListenOn: await dockerHostAddress() });
  try {
    p.writeStackFile("staging", {
      environment: "staging",
      service: { hostPort: await freePort(), env: { LOG_LEVEL: "INFO" } },
      image: { baseImage: LOCAL_PYTHON_BASE, name: p.project },
      proxy: { image: LOCAL_PROXY_IMAGE },
    });
    p.writeStackFile("prod", {
      environment: "prod",
      service: { hostPort: await freePort() },
      image: { name: p.project },
      // TLS ends in front (a prod stack must choose): the proxy serves plain HTTP, as before.
      proxy: { image: LOCAL_PROXY_IMAGE, tls: { mode: "upstream" } },
      promotion: { fromStack: `organization/${p.project}/staging` },
    });
    fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
    fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("hex"), { mode: 0o600 });
    const staging = await p.stack("staging");
    const prod = await p.stack("prod");
    await p.setSecret("staging", "secrets.DATABASE_URL", "sqlite:////data/app.db");
    await p.setSecret("staging", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));
    await p.setSecret("prod", "secrets.DATABASE_URL", `postgresql://${pg.user}:${pg.password}@${await dockerHostAddress()}:${pg.port}/${pg.database}`);
    await p.setSecret("prod", "secrets.SECRET_KEY", randomBytes(32).toString("base64url"));

    const timed = async (what: () => Promise<unknown>): Promise<number> => {
      const started = Date.now();
      await what();
      return Date.now() - started;
    };

    const firstStagingMs = await timed(() => staging.up());
    const noop: { ms: number; changed: number }[] = [];
    for (let i = 0; i < NOOP_RUNS; i++) {
      const started = Date.now();
      const result = await staging.up();
      const changes = result.summary.resourceChanges ?? {};
      noop.push({ ms: Date.now() - started, changed: Object.entries(changes).filter(([op]) => op !== "same").reduce((n, [, c]) => n + c, 0) });
    }
    const firstProdMs = await timed(() => prod.up());
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), "# a new release\n");
    const newDigestStagingMs = await timed(() => staging.up());
    const promotionMs = await timed(() => prod.up());

    const failures: { pulumiUpMs: number; exitToFailureMs: number }[] = [];
    for (let i = 0; i < FAILURE_RUNS; i++) {
      // A different refused value each round, so each round starts a new container.
      await p.setConfig("staging", "service.env.LOG_LEVEL", `verbose${i}`);
      const since = Math.floor(Date.now() / 1000);
      const started = Date.now();
      const res = await p.pulumi(["up", "--yes", "--stack", "staging"]);
      const ended = Date.now();
      if (res.code === 0) throw new Error("the update with a refused setting succeeded");
      // The release this update started: the newest one (the release before it keeps serving).
      const id = (await docker(["ps", "-aq", "--no-trunc", "--latest", "--filter", `name=^${p.project}-staging-app-`])).stdout.trim();
      const firstExit = await firstExitOf(id, since, Math.ceil(ended / 1000) + 1);
      if (firstExit === undefined) throw new Error("no exit of the new container was seen during the failed update");
      failures.push({ pulumiUpMs: ended - started, exitToFailureMs: Math.round(ended - firstExit) });
    }
    await p.setConfig("staging", "service.env.LOG_LEVEL", "INFO");
    await prod.destroy();
    await staging.destroy();

    const noopMedian = median(noop.map((r) => r.ms));
    const exitMedian = median(failures.map((f) => f.exitToFailureMs));
    const result = {
      benchmark: "real pulumi up wall times (Pulumi engine and Docker on this machine)",
      pulumi: pulumiVersion,
      node: process.version,
      firstStagingDeploySeconds: seconds(firstStagingMs),
      noopStagingUpdate: { runs: noop.map((r) => ({ seconds: seconds(r.ms), resourcesChanged: r.changed })), medianSeconds: seconds(noopMedian) },
      firstProdDeploySeconds: seconds(firstProdMs),
      stagingUpdateWithNewDigestSeconds: seconds(newDigestStagingMs),
      prodPromotionOfNewDigestSeconds: seconds(promotionMs),
      failedRelease: {
        runs: failures.map((f) => ({ pulumiUpSeconds: seconds(f.pulumiUpMs), containerExitToPulumiExitSeconds: seconds(f.exitToFailureMs) })),
        medianContainerExitToPulumiExitSeconds: seconds(exitMedian),
      },
      goals: { noopSeconds: GOALS.noopMs / 1000, noopResourcesChanged: GOALS.noopChanged, containerExitToPulumiExitSeconds: GOALS.exitToFailureMs / 1000 },
      met: {
        noop: noopMedian <= GOALS.noopMs && noop.every((r) => r.changed === GOALS.noopChanged),
        failFast: failures.every((f) => f.exitToFailureMs <= GOALS.exitToFailureMs),
      },
    };
    writeResults("engine", result);
  } finally {
    await pg.stop();
    p.cleanup();
  }
}

bench().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
