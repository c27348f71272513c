/**
 * Points the stack's front proxy at every task of the Swarm service: Caddy's dynamic upstreams
 * resolve `tasks.<service>` on the overlay network each second, so the configuration never changes
 * with a release (Swarm adds and removes the tasks; the proxy follows DNS). Loaded the same way the
 * single-host route loads its own (route.ts), when the proxy container or the settings change.
 */
import * as pulumi from "@pulumi/pulumi";
import { dockerClient } from "../docker/client";
import { caddyConfig } from "../proxy/caddyConfig";
import { loadProxyConfig } from "../proxy/route";

/** The resolved inputs. */
export interface SwarmProxyConfigInputs {
  proxyContainerId: string;
  /** The service whose tasks the proxy forwards to. */
  service: string;
  port: number;
  hsts: boolean;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What is recorded: the inputs, and when the proxy took the configuration. */
export interface SwarmProxyConfigOutputs extends SwarmProxyConfigInputs {
  configuredAt: string;
}

async function configure(inputs: SwarmProxyConfigInputs): Promise<SwarmProxyConfigOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const config = caddyConfig({ upstream: { name: `tasks.${inputs.service}`, port: inputs.port }, hsts: inputs.hsts });
  await loadProxyConfig(docker, inputs.proxyContainerId, config, `the tasks of service ${inputs.service}`);
  return { ...inputs, configuredAt: new Date().toISOString() };
}

const KEYS = ["proxyContainerId", "service", "port", "hsts", "dockerHost"] as const;

/** The dynamic provider: create and update load the configuration; delete leaves the proxy as it is. */
export const swarmProxyConfigProvider: pulumi.dynamic.ResourceProvider<SwarmProxyConfigInputs, SwarmProxyConfigOutputs> = {
  async diff(_id, olds, news) {
    return { changes: KEYS.some((key) => olds[key] !== news[key]), replaces: [] };
  },
  async create(inputs) {
    return { id: `${inputs.service}-proxy-config`, outs: await configure(inputs) };
  },
  async update(_id, _olds, news) {
    return { outs: await configure(news) };
  },
};

/** The proxy's configuration for a Swarm service; see the module comment. */
export class SwarmProxyConfig extends pulumi.dynamic.Resource {
  // `declare`, not a class field: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** When the proxy took the configuration. */
  declare public readonly configuredAt: pulumi.Output<string>;

  constructor(name: string, args: { [K in keyof SwarmProxyConfigInputs]: pulumi.Input<SwarmProxyConfigInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    super(swarmProxyConfigProvider, name, { ...args, configuredAt: undefined }, opts);
  }
}
