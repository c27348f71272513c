/**
 * Points the stack's front proxy at every task of the Swarm service, and proves through the proxy
 * that the release the rollout check proved answers there. Caddy's dynamic upstreams resolve
 * `tasks.<service>` on the overlay network each second, so the configuration does not change with a
 * release (Swarm adds and removes the tasks; the proxy follows DNS): it is loaded, the way the
 * single-host route loads its own (proxy/reload.ts: TLS files, `caddy reload`, kept only once
 * verified, else the previous one back), only when the proxy container, the service or the TLS
 * settings change. The look through the proxy runs after every rollout: from a short-lived probe
 * container on the stack's network (probe.ts), `/version` through the proxy (over HTTPS for
 * `proxy.domain` when the proxy terminates TLS, with exactly the configured leaf in `certificate`
 * mode, Caddy's issuance awaited in `acme` mode) must answer 200 from a running task of the release;
 * any of them may answer, so no one container is expected.
 */
import * as pulumi from "@pulumi/pulumi";
import type Docker from "dockerode";
import { canonicalJson } from "../canonicalJson";
import { dockerClient } from "../docker/client";
import { answeringRelease, awaitProxyAnswer, reloadVerified, type ProxyInputs } from "../proxy/reload";
import { withProbe, type ProbeContainerSpec } from "./probe";
import { listServiceTasks } from "./tasks";

/** The resolved inputs. */
export interface SwarmProxyConfigInputs extends ProxyInputs {
  /** The service whose tasks the proxy forwards to. */
  service: string;
  port: number;
  /** The release the rollout check proved (tasks.ts `specRelease`): only its running tasks count as answers. */
  release: string;
  /** When the rollout check proved it ready: a new proof means a new look through the proxy. */
  readyAt: string;
  /** The probe container that looks through the proxy: the release's image on the manager, the stack's network. */
  probe: Omit<ProbeContainerSpec, "service">;
}

/** What is recorded: the inputs, when the proxy was last verified, and what it served then. */
export interface SwarmProxyConfigOutputs extends SwarmProxyConfigInputs {
  configuredAt: string;
  /** With TLS at the proxy: the certificate it served to the look (DER, base64). */
  servedCertificate?: string;
  /** The files of the proxy's TLS folder this configuration reads. */
  tlsFiles?: string[];
}

/** Inputs that make the configuration the proxy holds; a change of any is a new one to load. */
const LOADED = ["proxyContainerId", "service", "port", "hsts", "dockerHost"] as const;
/** Inputs whose change calls for a new look through the proxy. */
const LOOKED_AT = ["proxyContainer", "release", "readyAt", "hostHeader"] as const;

/** Whether `news` is a configuration other than the one `olds` loaded (the TLS settings compared whatever their key order). */
export function configurationChanged(olds: Partial<SwarmProxyConfigInputs>, news: SwarmProxyConfigInputs): boolean {
  return LOADED.some((key) => olds[key] !== news[key]) || canonicalJson(olds.tls ?? null) !== canonicalJson(news.tls ?? null);
}

/** Why a `/version` answer is not one from a running task of `release`, or undefined when it is. */
async function fromRelease(docker: Docker, inputs: SwarmProxyConfigInputs, status: number, body: string): Promise<string | undefined> {
  const answer = answeringRelease(status, body);
  if ("refused" in answer) return answer.refused;
  // Listed at each answer: Swarm may have replaced a task (a killed one, a drained node) since the rollout.
  const tasks = await listServiceTasks(docker, inputs.service, inputs.probe.network);
  const ours = tasks.filter((t) => t.state === "running" && t.release === inputs.release && (t.containerId ?? "").startsWith(answer.release));
  return ours.length > 0 ? undefined : `HTTP ${status} from ${answer.release}, which is not a running task of the release`;
}

async function configure(inputs: SwarmProxyConfigInputs, olds?: SwarmProxyConfigOutputs): Promise<SwarmProxyConfigOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const what = `the tasks of service ${inputs.service}`;
  // Started before the configuration is loaded: the look's time is the proxy's, not the probe's start.
  return withProbe(docker, { service: inputs.service, ...inputs.probe }, async (probe) => {
    const look = { ...inputs, from: probe, answerer: "a running task of the release", what };
    const verify = (loadedAt: number) => awaitProxyAnswer(look, loadedAt, (status, body) => fromRelease(docker, inputs, status, body));
    const recorded = (served: string | undefined, tlsFiles: string[] | undefined): SwarmProxyConfigOutputs => ({
      ...inputs,
      configuredAt: new Date().toISOString(),
      ...(served === undefined ? {} : { servedCertificate: served }),
      ...(tlsFiles === undefined ? {} : { tlsFiles }),
    });
    if (olds !== undefined && !configurationChanged(olds, inputs)) {
      // The proxy holds this configuration already: a reload would only reset kept-alive connections.
      return recorded(await verify(Math.floor(Date.now() / 1000) - 1), olds.tlsFiles);
    }
    const upstream = { name: `tasks.${inputs.service}`, port: inputs.port };
    const loaded = await reloadVerified(docker, { ...inputs, upstream, previousFiles: olds?.tlsFiles, what }, verify);
    return recorded(loaded.served, loaded.tlsFiles);
  });
}

/** The dynamic provider: create and update load the configuration when it changed, and look through the proxy; delete leaves the proxy as it is. */
export const swarmProxyConfigProvider: pulumi.dynamic.ResourceProvider<SwarmProxyConfigInputs, SwarmProxyConfigOutputs> = {
  async diff(_id, olds, news) {
    return { changes: configurationChanged(olds, news) || LOOKED_AT.some((key) => olds[key] !== news[key]), replaces: [] };
  },
  async create(inputs) {
    return { id: `${inputs.service}-proxy-config`, outs: await configure(inputs) };
  },
  async update(_id, olds, news) {
    return { outs: await configure(news, olds) };
  },
};

/** The proxy's configuration for a Swarm service; see the module comment. */
export class SwarmProxyConfig extends pulumi.dynamic.Resource {
  // `declare`, not class fields: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** When the proxy was last verified to serve the release. */
  declare public readonly configuredAt: pulumi.Output<string>;
  /** With TLS at the proxy: the certificate it served then (DER, base64). */
  declare public readonly servedCertificate: pulumi.Output<string | undefined>;

  constructor(name: string, args: { [K in keyof SwarmProxyConfigInputs]: pulumi.Input<SwarmProxyConfigInputs[K]> }, opts: pulumi.CustomResourceOptions = {}) {
    // The recorded inputs hold `certificate` mode's private key: encrypted in state.
    super(swarmProxyConfigProvider, name, { ...args, configuredAt: undefined, servedCertificate: undefined }, { ...opts, additionalSecretOutputs: ["tls"] });
  }
}
