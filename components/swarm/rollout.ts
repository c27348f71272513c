/**
 * `SwarmRollout`: after the Docker provider has handed Swarm a new service spec (it does not wait:
 * see swarmService.ts), waits for Swarm's own rollout to converge or roll back (converge.ts),
 * proves every task of the release ready at its own address through a probe on the manager
 * (probe.ts), and records the `readiness` output with how many replicas were ready; the proxy's
 * configuration (proxyConfig.ts) then proves, through the proxy, that the release answers there. A
 * dynamic resource: every change of the release, the replica count or the readiness settings runs it
 * again; delete has nothing to remove.
 *
 * Pulumi serializes the provider with what it references: plain functions and `require`d packages.
 */
import * as pulumi from "@pulumi/pulumi";
import type { Readiness } from "../contract";
import { dockerClient } from "../docker/client";
import type { EngineHostConfig } from "../hardening";
import { execProber } from "../readiness/dockerView";
import { joinUrl, probeReadiness } from "../readiness/probe";
import { checkedRecord } from "../readiness/check";
import { awaitConvergence, type SwarmView } from "./converge";
import { combineRecords, removeProbes, taskContainerView, withProbe } from "./probe";
import { forgetPreviousSpec, inspectService, listServiceTasks, taskLogs } from "./tasks";

/** The resolved inputs of a rollout check. */
export interface SwarmRolloutInputs {
  /** The service's name; its tasks answer at `tasks.<service>` on `network`. */
  service: string;
  /** The service's id: a new service (a replacement) is a new rollout. */
  serviceId: string;
  /** The release the update set, as its tasks' specs show it (tasks.ts `specRelease`). */
  release: string;
  /** A hash of everything the task template is made of: a new one is a new rollout to watch. */
  revision: string;
  replicas: number;
  /** The stack's overlay network. */
  network: string;
  /** Our deadline for Swarm's rollout. */
  timeoutSeconds: number;
  timeoutHint?: string;
  /** The release's image on the manager, for the probe container. */
  probeImage: string;
  /** The probe container's user and engine settings (the hardening profile). */
  user: string;
  hostConfig: EngineHostConfig;
  labels: Record<string, string>;
  /** What each task is asked, and how patiently (the readiness settings). */
  port: number;
  path: string;
  imageDigest: string;
  readinessTimeoutSeconds: number;
  intervalMs: number;
  successThreshold: number;
  hostHeader: string;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What a task of the proven release was. */
export interface ProvenTask {
  slot: number;
  node: string;
  container: string;
}

/** What the provider records. */
export interface SwarmRolloutOutputs extends SwarmRolloutInputs {
  readiness: Readiness;
  tasks: ProvenTask[];
}

/** `work` on every item, at most `size` at a time, the results in the items' order. */
async function inBatches<T, R>(items: readonly T[], size: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let i = 0; i < items.length; i += size) results.push(...(await Promise.all(items.slice(i, i + size).map(work))));
  return results;
}

async function runRollout(inputs: SwarmRolloutInputs): Promise<SwarmRolloutOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const view: SwarmView = {
    service: () => inspectService(docker, inputs.service),
    tasks: () => listServiceTasks(docker, inputs.service, inputs.network),
    logs: (taskId, lines) => taskLogs(docker, taskId, lines),
  };
  const tasks = await awaitConvergence(view, {
    service: inputs.service,
    release: inputs.release,
    replicas: Number(inputs.replicas),
    timeoutSeconds: Number(inputs.timeoutSeconds),
    ...(inputs.timeoutHint === undefined ? {} : { timeoutHint: inputs.timeoutHint }),
  });

  await removeProbes(docker, inputs.service);
  const spec = { service: inputs.service, image: inputs.probeImage, network: inputs.network, user: inputs.user, hostConfig: inputs.hostConfig, labels: inputs.labels };
  return withProbe(docker, spec, async (probe) => {
    const prober = execProber(probe, { host: inputs.dockerHost, sshOpts: inputs.dockerSshOpts }, inputs.hostHeader);
    // Two at a time: each probe is a Python started inside the one small probe container.
    const records = await inBatches(tasks, 2, async (task) => {
      if (task.address === undefined) throw new Error(`task ${inputs.service}.${task.slot} has no address on network ${inputs.network}`);
      const base = `http://${task.address}:${inputs.port}`;
      try {
        return await probeReadiness(
          {
            url: base,
            path: inputs.path,
            imageDigest: inputs.imageDigest,
            timeoutSeconds: Number(inputs.readinessTimeoutSeconds),
            intervalMs: Number(inputs.intervalMs),
            successThreshold: Number(inputs.successThreshold),
            // A request's budget includes starting the probe's Python over the engine's exec.
            requestTimeoutMs: 5000,
          },
          taskContainerView(view, task, prober, base),
          prober,
        );
      } catch (error) {
        throw new Error(`task ${inputs.service}.${task.slot} on node ${task.nodeId.slice(0, 12)}: ${(error as Error).message}`, { cause: error });
      }
    });
    const readiness = combineRecords(records, joinUrl(`http://tasks.${inputs.service}:${inputs.port}`, inputs.path), Number(inputs.replicas));
    await forgetPreviousSpec(docker, inputs.service);
    return {
      ...inputs,
      readiness,
      tasks: tasks.map((t) => ({ slot: t.slot, node: t.nodeId, container: (t.containerId ?? "").slice(0, 12) })),
    };
  });
}

/** Inputs whose change is a new rollout to watch; how to connect (`dockerSshOpts`) is not. */
const WATCHED = [
  "service", "serviceId", "release", "revision", "replicas", "network", "timeoutSeconds", "probeImage", "port", "path", "imageDigest",
  "readinessTimeoutSeconds", "intervalMs", "successThreshold", "hostHeader", "dockerHost",
] as const;

/** The dynamic provider; see the module comment. */
export const rolloutProvider: pulumi.dynamic.ResourceProvider<SwarmRolloutInputs, SwarmRolloutOutputs> = {
  async diff(_id, olds, news) {
    return { changes: WATCHED.some((key) => JSON.stringify(olds[key] ?? null) !== JSON.stringify(news[key] ?? null)), replaces: [] };
  },
  async create(inputs) {
    return { id: `${inputs.service}-rollout`, outs: await runRollout(inputs) };
  },
  async update(_id, _olds, news) {
    return { outs: await runRollout(news) };
  },
};

/** The rollout check of a Swarm service; see the module comment. */
export class SwarmRollout extends pulumi.dynamic.Resource {
  // `declare`, not class fields: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** What the check observed of every task; validated with the contract's `Readiness` schema. */
  declare public readonly readiness: pulumi.Output<Readiness>;
  /** The tasks it proved ready. */
  declare public readonly tasks: pulumi.Output<ProvenTask[]>;

  constructor(name: string, args: { [K in keyof SwarmRolloutInputs]: pulumi.Input<SwarmRolloutInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    super(rolloutProvider, name, { ...args, readiness: undefined, tasks: undefined }, opts);
    this.readiness = this.readiness.apply((record) => (record === undefined ? record : checkedRecord(name, record)));
  }
}
