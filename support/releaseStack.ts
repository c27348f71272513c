/**
 * A stack's release topology on the real engine, without Pulumi: the stack's network and the egress
 * network releases start on, the front proxy as FrontProxy runs it, release containers from the
 * release provider and switches by the route provider, the same code `pulumi up` runs. Everything is named after the prefix, and `remove()`
 * takes it all away again.
 */
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import { hardeningProfile, proxyProfile, toDockerRunArgs, toHostConfig } from "../components/hardening";
import { routeProvider, type ProxyRouteInputs, type ProxyRouteOutputs } from "../components/proxy/route";
import { releaseProvider, type ReleaseOutputs } from "../components/release/provider";
import { buildImage, docker, LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, removeContainers, removeImages, requireDockerEngine } from "./docker";
import { freePort, httpRequest, waitFor } from "./wait";

/** A release container, and its address on the egress network (reachable from this host). */
export interface StackRelease extends ReleaseOutputs {
  address: string;
}

/** What {@link startReleaseStack} made. */
export interface ReleaseStack {
  /** The proxy's published port on 127.0.0.1, and its container's name. */
  proxyPort: number;
  proxyName: string;
  /** Starts a release and waits until it answers `/readyz` directly. */
  startRelease(): Promise<StackRelease>;
  /** Switches the proxy to `release` (verified through the proxy, as in `pulumi up`). */
  switchTo(release: StackRelease): Promise<void>;
  /** Deletes a release as Pulumi does at the end of an update: SIGTERM, drain, remove. */
  deleteRelease(release: StackRelease): Promise<void>;
  /** Removes every container, volume, network and image this stack made. */
  remove(): Promise<void>;
}

/** Builds the image and starts the network and the front proxy, all named after `prefix`. */
export async function startReleaseStack(prefix: string): Promise<ReleaseStack> {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  const [tag, network, egress, volume, proxy, proxyVolume] = [`${prefix}-image:latest`, `${prefix}-net`, `${prefix}-egress`, `${prefix}-data`, `${prefix}-proxy`, `${prefix}-proxy-config`];
  const image = (await buildImage({ context: path.resolve(__dirname, "../backend"), tag, buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE } })).imageId;
  await docker(["network", "create", network]);
  await docker(["network", "create", egress]);
  await docker(["volume", "create", volume]);
  await docker(["volume", "create", proxyVolume]);
  const proxyPort = await freePort();
  // The proxy as FrontProxy runs it: its profile, its config volume, `caddy run --resume`.
  const run = await docker([
    "run", "-d", "--name", proxy, "--network", network, ...toDockerRunArgs(proxyProfile, proxyVolume),
    "-e", "XDG_CONFIG_HOME=/config", "-e", "XDG_DATA_HOME=/data", "-p", `127.0.0.1:${proxyPort}:8080`,
    LOCAL_PROXY_IMAGE, "caddy", "run", "--resume",
  ]);
  const proxyId = run.stdout.trim();
  // FrontProxy's Container has no pids limit (the Docker provider cannot set one): the route sets it.
  await docker(["update", "--pids-limit", "-1", proxy]);
  const releases: StackRelease[] = [];
  let route: { id: string; outs: ProxyRouteOutputs } | undefined;

  return {
    proxyPort,
    proxyName: proxy,
    async startRelease() {
      const { outs } = await releaseProvider.create!({
        namePrefix: `${prefix}-app`,
        image,
        env: ["APP_ENV=staging", "DATABASE_URL=sqlite:////data/app.db", "PORT=8000", `SECRET_KEY=${randomBytes(32).toString("hex")}`, "ALLOWED_HOSTS=localhost,127.0.0.1"],
        labels: { "backend-delivery.role": "release" },
        user: hardeningProfile.user,
        stopSignal: hardeningProfile.stopSignal,
        stopTimeoutSeconds: hardeningProfile.stopTimeoutSeconds,
        hostConfig: toHostConfig(hardeningProfile, volume),
        network: egress,
      });
      const release0 = outs as ReleaseOutputs;
      const inspected = JSON.parse((await docker(["container", "inspect", release0.name])).stdout)[0] as { NetworkSettings: { Networks: Record<string, { IPAddress: string }> } };
      const release: StackRelease = { ...release0, address: inspected.NetworkSettings.Networks[egress]!.IPAddress };
      releases.push(release);
      await waitFor(async () => ((await httpRequest(`http://${release.address}:8000/readyz`, { timeoutMs: 2000, headers: { host: "localhost" } })).status === 200 ? true : undefined), {
        timeoutMs: 60_000,
        what: `release ${release.name} to answer /readyz`,
      });
      return release;
    },
    async switchTo(release) {
      const inputs: ProxyRouteInputs = {
        proxyContainer: proxy,
        proxyContainerId: proxyId,
        releaseName: release.name,
        releaseId: release.containerId,
        releasePort: 8000,
        network,
        servingAlias: `${prefix}-serving`,
        readyAt: new Date().toISOString(),
        hsts: true,
        hostHeader: "127.0.0.1",
      };
      if (route === undefined) {
        const created = await routeProvider.create!(inputs);
        route = { id: created.id, outs: created.outs as ProxyRouteOutputs };
      } else {
        route = { id: route.id, outs: (await routeProvider.update!(route.id, route.outs, inputs)).outs as ProxyRouteOutputs };
      }
    },
    async deleteRelease(release) {
      await releaseProvider.delete!(release.containerId, release);
    },
    async remove() {
      await removeContainers(proxy, ...releases.map((r) => r.name));
      await docker(["volume", "rm", volume, proxyVolume], { allowFailure: true });
      await docker(["network", "rm", network, egress], { allowFailure: true });
      await removeImages(tag);
    },
  };
}
