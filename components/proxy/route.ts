/**
 * `ProxyRoute`: switches the front proxy to the release that was just proven ready, atomically, and
 * verifies the switch through the proxy before the update goes on (and, at its end, deletes the old
 * release). A Pulumi dynamic resource: create and update switch; delete leaves the proxy as it is.
 *
 * The switch: the new configuration is written into the proxy's config volume through the engine,
 * loaded with `caddy reload` inside the proxy's container (Caddy swaps it whole; requests under way
 * finish on the old one), then kept as the file a restarted proxy resumes. The verification:
 * `/version` asked through the proxy, from inside the new release, must name that release.
 */
import * as pulumi from "@pulumi/pulumi";
import type Docker from "dockerode";
import { dockerClient, execIn, putFile } from "../docker/client";
import { execProber } from "../readiness/dockerView";
import { PROXY_ADMIN, PROXY_CONFIG_DIR, PROXY_LISTEN_PORT, PROXY_RESUME_FILE, caddyConfig } from "./caddyConfig";

/** Inputs of a {@link ProxyRoute}. */
export interface ProxyRouteArgs {
  /** The proxy's container name: its host name on the stack's network. */
  proxyContainer: pulumi.Input<string>;
  /** The proxy's container id: a new proxy container starts unrouted, so it is switched too. */
  proxyContainerId: pulumi.Input<string>;
  /** The release to switch to: its container name on the stack network, and its full id. */
  releaseName: pulumi.Input<string>;
  releaseId: pulumi.Input<string>;
  /** The port the release listens on. */
  releasePort: pulumi.Input<number>;
  /** When the release was proven ready; the route waits for it, and a new proof means a new switch. */
  readyAt: pulumi.Input<string>;
  /** Send `Strict-Transport-Security` from the proxy's own answers. */
  hsts: pulumi.Input<boolean>;
  /** The `Host` the verification names: one the backend accepts. */
  hostHeader: pulumi.Input<string>;
  /** Docker host of the engine (`docker:host`); the local one when unset. */
  dockerHost?: pulumi.Input<string>;
  /** `docker:sshOpts` for an `ssh://` host; how to connect, so no reason to switch again. */
  dockerSshOpts?: pulumi.Input<string[]>;
}

/** The inputs as the provider sees them: resolved. */
export interface ProxyRouteInputs {
  proxyContainer: string;
  proxyContainerId: string;
  releaseName: string;
  releaseId: string;
  releasePort: number;
  readyAt: string;
  hsts: boolean;
  hostHeader: string;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What the provider records: its inputs, and when the switch was verified. */
export interface ProxyRouteOutputs extends ProxyRouteInputs {
  switchedAt: string;
}

/** How long the verification may take before the switch counts as failed. */
const VERIFY_SECONDS = 20;

/**
 * Loads `config` (Caddy's JSON) into the running proxy `proxyContainerId` and keeps it as the one a
 * restarted proxy resumes; `what` names it in the error of a configuration the proxy refused.
 */
export async function loadProxyConfig(docker: Docker, proxyContainerId: string, config: Record<string, unknown>, what: string): Promise<void> {
  const text = `${JSON.stringify(config, null, 2)}\n`;
  await putFile(docker, proxyContainerId, PROXY_CONFIG_DIR, "next.json", text);
  const loaded = await execIn(docker, proxyContainerId, ["caddy", "reload", "--config", `${PROXY_CONFIG_DIR}/next.json`, "--address", PROXY_ADMIN, "--force"], 30_000);
  if (loaded.exitCode !== 0) {
    throw new Error(
      `the front proxy refused the configuration for ${what} (caddy reload exited ${loaded.exitCode}); ` +
        `the previous release keeps serving:\n${(loaded.stderr || loaded.stdout).trim().split("\n").slice(-5).join("\n")}`,
    );
  }
  // Only a configuration the proxy took becomes the one it restarts with.
  await putFile(docker, proxyContainerId, PROXY_CONFIG_DIR, PROXY_RESUME_FILE, text);
}

/** Loads the configuration for `release` into the proxy and proves that traffic reaches it. */
async function switchTo(inputs: ProxyRouteInputs): Promise<ProxyRouteOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const config = caddyConfig({ upstream: `${inputs.releaseName}:${inputs.releasePort}`, hsts: inputs.hsts });
  await loadProxyConfig(docker, inputs.proxyContainerId, config, `release ${inputs.releaseName}`);

  const expected = inputs.releaseId.slice(0, 12);
  const prober = execProber(inputs.releaseId, { host: inputs.dockerHost, sshOpts: inputs.dockerSshOpts }, inputs.hostHeader);
  const url = `http://${inputs.proxyContainer}:${PROXY_LISTEN_PORT}/version`;
  const deadline = Date.now() + VERIFY_SECONDS * 1000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const answer = await prober.get(url, 5000);
      const release = answer.status === 200 ? (JSON.parse(answer.body) as { release?: unknown }).release : undefined;
      if (release === expected) return { ...inputs, switchedAt: new Date().toISOString() };
      last = `HTTP ${answer.status}, release ${JSON.stringify(release)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(
    `the front proxy took the configuration for release ${inputs.releaseName}, but ${url} did not report it within ` +
      `${VERIFY_SECONDS} s (last: ${last}); the previous release is not deleted`,
  );
}

/** The dynamic provider: create and update switch; delete leaves the proxy serving what it serves. */
export const routeProvider: pulumi.dynamic.ResourceProvider<ProxyRouteInputs, ProxyRouteOutputs> = {
  async diff(_id, olds, news) {
    const keys = ["proxyContainer", "proxyContainerId", "releaseName", "releaseId", "releasePort", "readyAt", "hsts", "hostHeader", "dockerHost"] as const;
    return { changes: keys.some((key) => olds[key] !== news[key]), replaces: [] };
  },
  async create(inputs) {
    return { id: `${inputs.proxyContainer}-route`, outs: await switchTo(inputs) };
  },
  async update(_id, _olds, news) {
    return { outs: await switchTo(news) };
  },
};

/**
 * Points the front proxy at a release proven ready, and proves through the proxy that it did.
 * Depends on the release's readiness (through `readyAt`), so it never switches to an unproven one.
 */
export class ProxyRoute extends pulumi.dynamic.Resource {
  // `declare`, not a class field: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** When the switch was verified through the proxy. */
  declare public readonly switchedAt: pulumi.Output<string>;

  constructor(name: string, args: ProxyRouteArgs, opts?: pulumi.CustomResourceOptions) {
    super(routeProvider, name, { ...args, switchedAt: undefined }, opts);
  }
}
