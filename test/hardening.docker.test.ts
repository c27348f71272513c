// The hardening profile applied to the real backend container with `docker run` flags from the same
// data the program deploys: the container runs, turns healthy, and the engine reports every setting
// of the profile; the lock-down is also observed from inside. Fails (never skips) without the engine.
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hardeningProfile as profile, toDockerRunArgs } from "../components/hardening";
import {
  buildImage,
  docker,
  inspectContainer,
  LOCAL_PYTHON_BASE,
  removeContainers,
  removeImages,
  requireDockerEngine,
  uniqueName,
  waitForHealthy,
} from "../support/docker";
import { freePort, httpRequest } from "../support/wait";

const TAG = `${uniqueName("bd-hardening-test")}:latest`;
const NAME = uniqueName("bd-hardening");
const VOLUME = uniqueName("bd-hardening-data");
let url = "";

beforeAll(async () => {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await buildImage({ context: path.resolve(__dirname, "../backend"), tag: TAG, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } });
  await docker(["volume", "create", VOLUME]);
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const env = { APP_ENV: "staging", DATABASE_URL: "sqlite:////data/app.db", SECRET_KEY: randomBytes(36).toString("base64url") };
  // Secret values reach the CLI through its environment (`-e NAME`), never its argv.
  await docker(
    ["run", "-d", "--name", NAME, ...toDockerRunArgs(profile, VOLUME), "-p", `127.0.0.1:${port}:8000`, ...Object.keys(env).flatMap((k) => ["-e", k]), TAG],
    { env },
  );
  await waitForHealthy(NAME, 90_000);
}, 900_000);

afterAll(async () => {
  await removeContainers(NAME);
  await docker(["volume", "rm", "--force", VOLUME], { allowFailure: true });
  await removeImages(TAG);
});

async function exec(...command: string[]) {
  return docker(["exec", NAME, ...command], { allowFailure: true });
}

describe("hardening profile on the real backend container", () => {
  it("runs healthy and serves on the loopback port", async () => {
    const state = await inspectContainer(NAME);
    expect(state.State.Status).toBe("running");
    expect(state.State.Health?.Status).toBe("healthy");
    const ready = await httpRequest(`${url}/readyz`);
    expect(ready.status).toBe(200);
  });

  it("shows every setting of the profile in docker inspect", async () => {
    const raw = JSON.parse((await docker(["container", "inspect", NAME])).stdout) as [
      {
        Config: { User: string; StopSignal: string; StopTimeout: number };
        HostConfig: {
          ReadonlyRootfs: boolean;
          Tmpfs: Record<string, string> | null;
          CapDrop: string[] | null;
          CapAdd: string[] | null;
          SecurityOpt: string[] | null;
          Memory: number;
          MemorySwap: number;
          NanoCpus: number;
          PidsLimit: number | null;
          RestartPolicy: { Name: string };
          LogConfig: { Type: string; Config: Record<string, string> };
          PortBindings: Record<string, { HostIp: string; HostPort: string }[]>;
        };
        Mounts: { Type: string; Name?: string; Destination: string; RW: boolean }[];
      },
    ];
    const { Config, HostConfig, Mounts } = raw[0];
    const mib = 1024 * 1024;
    expect(Config.User).toBe(profile.user);
    expect(HostConfig.ReadonlyRootfs).toBe(profile.readOnlyRootFilesystem);
    expect(HostConfig.Tmpfs).toEqual(profile.tmpfs);
    expect(Mounts.map((m) => ({ Type: m.Type, Name: m.Name, Destination: m.Destination, RW: m.RW }))).toEqual([
      { Type: "volume", Name: VOLUME, Destination: profile.dataPath, RW: true },
    ]);
    expect(HostConfig.CapDrop).toEqual([...profile.capDrop]);
    expect(HostConfig.CapAdd ?? []).toEqual([...profile.capAdd]);
    expect(HostConfig.SecurityOpt).toEqual([...profile.securityOpts]);
    expect(HostConfig.Memory).toBe(profile.resources.memoryMb * mib);
    expect(HostConfig.MemorySwap).toBe(profile.resources.memoryMb * mib);
    expect(HostConfig.NanoCpus).toBe(profile.resources.cpus * 1e9);
    expect(HostConfig.PidsLimit).toBe(profile.resources.pids);
    expect(HostConfig.RestartPolicy.Name).toBe(profile.restart);
    expect(HostConfig.LogConfig).toEqual({ Type: profile.logDriver, Config: profile.logOpts });
    expect(Config.StopTimeout).toBe(profile.stopTimeoutSeconds);
    expect(Config.StopSignal).toBe(profile.stopSignal);
    expect(Object.values(HostConfig.PortBindings).flat().map((b) => b.HostIp)).toEqual(["127.0.0.1"]);
  });

  it("holds from inside: non-root, no capabilities, no new privileges", async () => {
    expect((await exec("id", "-u")).stdout.trim()).toBe(profile.user.split(":")[0]);
    const status = (await exec("cat", "/proc/1/status")).stdout;
    expect(status).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status).toMatch(/^CapBnd:\s+0000000000000000$/m);
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
  });

  it("keeps the root file system read-only, /data writable and /tmp non-executable", async () => {
    const root = await exec("touch", "/app/written");
    expect(root.code).not.toBe(0);
    expect(root.stderr).toContain("Read-only file system");
    expect((await exec("touch", `${profile.dataPath}/written`)).code).toBe(0);
    expect((await exec("cp", "/bin/true", "/tmp/true")).code).toBe(0);
    const run = await exec("/tmp/true");
    expect(run.code).not.toBe(0);
    expect(`${run.stdout}${run.stderr}`).toContain("permission denied");
  });
});
