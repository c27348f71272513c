// The release container and the front proxy's route on the real Docker engine: the release provider
// creates exactly the container the hardening profile describes, and the route switches a real Caddy
// 2 proxy between releases, verified through the proxy. Needs the engine, the local base image and
// the local Caddy image; fails (never skips) without them.
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hardeningProfile, proxyProfile, toDockerRunArgs, toHostConfig } from "../components/hardening";
import { dockerClient } from "../components/docker/client";
import { reloadVerified } from "../components/proxy/reload";
import { routeProvider, type ProxyRouteInputs, type ProxyRouteOutputs } from "../components/proxy/route";
import { releaseProvider, type ReleaseInputs, type ReleaseOutputs } from "../components/release/provider";
import { buildImage, docker, LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, removeContainers, removeImages, requireDockerEngine, uniqueName, waitForHealthy } from "../support/docker";
import { SECURITY_HEADERS } from "../support/securityHeaders";
import { freePort, httpRequest } from "../support/wait";

const TAG = `${uniqueName("bd-release-test")}:latest`;
const PREFIX = uniqueName("bd-release");
const NETWORK = `${PREFIX}-net`;
/** Where releases start, before the route joins them to the proxy's network (sorted before it, as the program's). */
const EGRESS = `${PREFIX}-egress`;
const VOLUME = `${PREFIX}-data`;
const PROXY = `${PREFIX}-proxy`;
const PROXY_VOLUME = `${PREFIX}-proxy-config`;
const released: ReleaseOutputs[] = [];
let imageId = "";
let proxyPort = 0;
let proxyId = "";

/** A release's inputs as the program makes them, with a fresh key (the value never shows anywhere). */
function releaseInputs(overrides: Partial<ReleaseInputs> = {}): ReleaseInputs {
  return {
    namePrefix: `${PREFIX}-app`,
    image: imageId,
    env: ["APP_ENV=staging", "DATABASE_URL=sqlite:////data/app.db", "PORT=8000", `SECRET_KEY=${randomBytes(32).toString("hex")}`],
    labels: { "backend-delivery.role": "release" },
    user: hardeningProfile.user,
    stopSignal: hardeningProfile.stopSignal,
    stopTimeoutSeconds: hardeningProfile.stopTimeoutSeconds,
    hostConfig: toHostConfig(hardeningProfile, VOLUME),
    network: EGRESS,
    ...overrides,
  };
}

async function createRelease(overrides: Partial<ReleaseInputs> = {}): Promise<ReleaseOutputs> {
  const { outs } = await releaseProvider.create!(releaseInputs(overrides));
  released.push(outs as ReleaseOutputs);
  return outs as ReleaseOutputs;
}

async function inspect(name: string) {
  return JSON.parse((await docker(["container", "inspect", name])).stdout)[0] as {
    Id: string;
    Name: string;
    Config: { User: string; Env: string[]; Labels: Record<string, string>; StopSignal: string; StopTimeout?: number; Hostname: string };
    HostConfig: Record<string, unknown>;
    NetworkSettings: { Networks: Record<string, unknown> };
    Mounts: { Type: string; Name?: string; Destination: string }[];
    State: { Status: string };
  };
}

beforeAll(async () => {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  imageId = (await buildImage({ context: path.resolve(__dirname, "../backend"), tag: TAG, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } })).imageId;
  await docker(["network", "create", NETWORK]);
  await docker(["network", "create", EGRESS]);
  await docker(["volume", "create", VOLUME]);
  await docker(["volume", "create", PROXY_VOLUME]);
  proxyPort = await freePort();
  // The proxy as FrontProxy runs it: its profile, its config volume, `caddy run --resume`.
  const run = await docker([
    "run", "-d", "--name", PROXY, "--network", NETWORK, ...toDockerRunArgs(proxyProfile, PROXY_VOLUME),
    "-e", "XDG_CONFIG_HOME=/config", "-e", "XDG_DATA_HOME=/data", "-p", `127.0.0.1:${proxyPort}:8080`,
    LOCAL_PROXY_IMAGE, "caddy", "run", "--resume",
  ]);
  proxyId = run.stdout.trim();
}, 900_000);

afterAll(async () => {
  await removeContainers(PROXY, ...released.map((r) => r.name));
  await docker(["volume", "rm", VOLUME, PROXY_VOLUME], { allowFailure: true });
  await docker(["network", "rm", NETWORK, EGRESS], { allowFailure: true });
  await removeImages(TAG);
}, 120_000);

describe("the release provider", () => {
  it("creates and starts the container the hardening profile describes, as `docker run` with the same profile does", async () => {
    const release = await createRelease();
    expect(release.name).toMatch(new RegExp(`^${PREFIX}-app-[0-9a-f]{6}$`));
    const api = await inspect(release.name);
    expect(api.State.Status).toBe("running");
    expect(api.Id).toBe(release.containerId);
    // The host name is the short id: what /version reports as `release`.
    expect(api.Config.Hostname).toBe(release.containerId.slice(0, 12));

    const cli = uniqueName("bd-release-cli");
    await docker(["create", "--name", cli, ...toDockerRunArgs(hardeningProfile, VOLUME), TAG]);
    try {
      const viaCli = await inspect(cli);
      const keys = ["ReadonlyRootfs", "Tmpfs", "CapDrop", "CapAdd", "SecurityOpt", "Memory", "MemorySwap", "NanoCpus", "PidsLimit", "RestartPolicy", "LogConfig"];
      // An empty list reads back as [] from the API and as null from the CLI: the same setting.
      const pick = (h: Record<string, unknown>) => Object.fromEntries(keys.map((k) => [k, Array.isArray(h[k]) && (h[k] as unknown[]).length === 0 ? null : (h[k] ?? null)]));
      expect(pick(api.HostConfig)).toEqual(pick(viaCli.HostConfig));
      expect(api.Config.User).toBe(viaCli.Config.User);
      expect(api.Config.StopSignal).toBe("SIGTERM");
      expect(api.Mounts.map((m) => [m.Type, m.Name, m.Destination])).toEqual([["volume", VOLUME, "/data"]]);
    } finally {
      await removeContainers(cli);
    }
    expect(api.HostConfig.PidsLimit).toBe(hardeningProfile.resources.pids);
    expect(Object.keys(api.NetworkSettings.Networks)).toEqual([EGRESS]);
    expect(api.Config.Labels).toMatchObject({ "backend-delivery.role": "release" });
  });

  it("tells the same release from a new one: any change is a replacement, created before the old one is deleted", async () => {
    const inputs = releaseInputs();
    const outputs = { ...inputs, name: "x", containerId: "y" };
    expect(await releaseProvider.diff!("y", outputs, { ...inputs })).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
    expect(await releaseProvider.diff!("y", outputs, { ...inputs, labels: { ...inputs.labels } })).toMatchObject({ changes: false });
    // Each change is named, so a preview says why the release is replaced.
    const changes: [Partial<typeof inputs>, string[]][] = [
      [{ image: "sha256:other" }, ["image"]],
      [{ env: [...inputs.env, "LOG_LEVEL=DEBUG"] }, ["env"]],
      [{ dockerHost: "tcp://127.0.0.1:2375" }, ["dockerHost"]],
      [{ image: "sha256:other", hostConfig: { ...inputs.hostConfig, Memory: 1 } }, ["image", "hostConfig"]],
    ];
    for (const [change, keys] of changes) {
      expect(await releaseProvider.diff!("y", outputs, { ...inputs, ...change })).toEqual({ changes: true, replaces: keys, deleteBeforeReplace: false });
    }
  });

  it("reads a container that vanished as gone, and deletes one that is already gone without error", async () => {
    const release = await createRelease();
    await removeContainers(release.name);
    expect(await releaseProvider.read!(release.containerId, release)).toEqual({});
    await releaseProvider.delete!(release.containerId, release);
  });

  it("deletes a release: stopped with SIGTERM (the backend shuts down cleanly), then removed", async () => {
    const release = await createRelease();
    // Serving, so the SIGTERM reaches uvicorn's graceful shutdown (a starting one stops at once too).
    await waitForHealthy(release.name);
    const started = Date.now();
    await releaseProvider.delete!(release.containerId, release);
    const gone = await docker(["container", "inspect", release.name], { allowFailure: true });
    expect(gone.code).not.toBe(0);
    // Well inside the 30 s stop timeout: the backend stopped on the signal, not on the engine's SIGKILL.
    expect(Date.now() - started).toBeLessThan(15_000);
  }, 90_000);
});

/** The gateway of the container's default route, read from its /proc/net/route (little-endian hex). */
async function defaultGateway(name: string): Promise<string> {
  const table = (await docker(["exec", name, "cat", "/proc/net/route"])).stdout;
  const row = table.split("\n").map((line) => line.trim().split(/\s+/)).find((fields) => fields[1] === "00000000");
  if (row === undefined) throw new Error(`no default route in ${name}:\n${table}`);
  return Buffer.from(row[2]!, "hex").reverse().join(".");
}

async function networkGateway(network: string): Promise<string> {
  return (await docker(["network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network])).stdout.trim();
}

describe("the route of the front proxy", () => {
  const route = (release: ReleaseOutputs): ProxyRouteInputs => ({
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
  });
  const servedBy = async (): Promise<string | undefined> => {
    const answer = await httpRequest(`http://127.0.0.1:${proxyPort}/version`);
    return answer.status === 200 ? (JSON.parse(answer.body) as { release: string }).release : undefined;
  };

  it("switches the proxy from one release to the next, verified through the proxy, and a restarted proxy resumes it", async () => {
    const a = await createRelease();
    const b = await createRelease();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const first = await routeProvider.create!(route(a));
    expect(first.outs).toMatchObject({ releaseName: a.name });
    expect(await servedBy()).toBe(a.containerId.slice(0, 12));
    await routeProvider.update!(first.id, first.outs!, route(b));
    expect(await servedBy()).toBe(b.containerId.slice(0, 12));
    // The switch stopped the release that served; it joined b to the proxy's network under the serving name only.
    expect((await inspect(a.name)).State.Status).toBe("exited");
    const joined = (await inspect(b.name)).NetworkSettings.Networks as Record<string, { Aliases: string[] | null }>;
    expect(Object.keys(joined).sort()).toEqual([EGRESS, NETWORK].sort());
    expect(joined[NETWORK]!.Aliases).toContain(`${PREFIX}-serving`);
    expect(joined[EGRESS]!.Aliases ?? []).not.toContain(`${PREFIX}-serving`);
    // Its default route is still the egress network's, as before it joined: connections out are undisturbed.
    expect(await defaultGateway(b.name)).toBe(await networkGateway(EGRESS));

    await docker(["restart", PROXY]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(await servedBy()).toBe(b.containerId.slice(0, 12));
  });

  it("takes over from a route an earlier version recorded: the proxy pointed at the release's own name on the stack's network", async () => {
    // What that version left: the release on the stack's network, the proxy forwarding to its container name.
    await docker(["stop", "-t", "1", ...released.map((r) => r.name)], { allowFailure: true });
    const legacy = await createRelease({ network: NETWORK });
    const next = await createRelease();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const recorded: Partial<ProxyRouteInputs> = route(legacy);
    delete recorded.network;
    delete recorded.servingAlias;
    await reloadVerified(dockerClient(), { ...(recorded as ProxyRouteInputs), upstream: `${legacy.name}:8000`, what: `release ${legacy.name}` }, async () => undefined);
    expect(await servedBy()).toBe(legacy.containerId.slice(0, 12));
    const olds = { ...recorded, switchedAt: new Date().toISOString() } as ProxyRouteOutputs;
    const { outs } = await routeProvider.update!("route", olds, route(next));
    // The configuration is loaded once, for the serving name; the earlier release is stopped.
    expect(outs).toMatchObject({ upstream: `${PREFIX}-serving:8000`, releaseName: next.name });
    expect(await servedBy()).toBe(next.containerId.slice(0, 12));
    expect((await inspect(legacy.name)).State.Status).toBe("exited");
  }, 120_000);

  it("forwards the backend's answers without a Server header, and writes its own with the security headers", async () => {
    const ok = await httpRequest(`http://127.0.0.1:${proxyPort}/healthz`);
    expect(ok.status).toBe(200);
    expect(ok.headers.server).toBeUndefined();
    expect(ok.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
    // No release answers: the proxy writes the 502 itself, after retrying for its try duration.
    await docker(["stop", "-t", "1", ...released.map((r) => r.name)], { allowFailure: true });
    const bad = await httpRequest(`http://127.0.0.1:${proxyPort}/healthz`, { timeoutMs: 15_000 });
    expect(bad.status).toBe(502);
    expect(JSON.parse(bad.body)).toEqual({ detail: "the release did not answer" });
    for (const [name, value] of Object.entries({ ...SECURITY_HEADERS, "strict-transport-security": "max-age=63072000; includeSubDomains" })) {
      expect(bad.headers[name], name).toBe(value);
    }
    expect(bad.headers["permissions-policy"]).toContain("camera=()");
    expect(bad.headers.server).toBeUndefined();
  }, 60_000);
});
