/**
 * Image retention under Swarm: after a successful rollout, every node that ran tasks of the
 * service keeps the serving image, the rollback target and the `keepImages` newest images of the
 * stack, by the single host's rules (release/images.ts), and the rest goes.
 *
 * Only the manager's Docker API is reachable from where `pulumi` runs, not the workers'. So the
 * provider runs a short-lived Swarm job of its own through the manager: a `global-job` service that
 * runs node_images.py once on each of those nodes, with the node's Docker socket mounted, and is
 * removed as soon as its tasks have ended. Its image is the backend image by the digest the service
 * runs, which is on exactly the nodes that ran tasks of the release: no pull, from anywhere. Each
 * task prints one line, what its node kept and removed, which the resource records per node.
 *
 * The job is no workload of the backend's: it is created here, through the Engine API, not as a
 * `docker.Service` the policy pack sees, and exists for the seconds its tasks run (README, "Images
 * that never fill the disk"). Pulumi serializes this provider into its own process: plain functions,
 * `require`d packages and the script's text, read here once, as a string.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type Docker from "dockerode";
import * as pulumi from "@pulumi/pulumi";
import { dockerClient } from "../docker/client";
import { IMAGE_PYTHON } from "../readiness/dockerView";
import { taskLogs } from "./tasks";

/** The node side, run by the job's tasks (Python's standard library only: the backend image has no Docker CLI). */
const NODE_SCRIPT = fs.readFileSync(path.join(__dirname, "node_images.py"), "utf8");

/** The label that marks a stack's pruning jobs, so that one an interrupted run left is found again. */
export const JOB_LABEL = "backend-delivery.prune-of";
/** Where each node's engine listens; the script checks that it is its own node's. */
export const NODE_DOCKER_SOCKET = "/var/run/docker.sock";
/** How long the job's tasks may take on every node together. */
export const JOB_DEADLINE_SECONDS = 120;

/** What the provider is given, resolved. */
export interface SwarmImagesInputs {
  /** The project whose label an image must carry to be touched. */
  project: string;
  /** The stack's own tag repository (release/images.ts `stackImageRepository`). */
  repository: string;
  keepImages: number;
  /** The Swarm service whose tasks' nodes are pruned. */
  service: string;
  /** The image its tasks run (`<repo>@sha256:...`, or a local image id on a one-node swarm); the job runs it too. */
  serving: string;
  /** The rollback target, as the nodes know it; it may be gone from them. */
  previous?: string;
  /** What the program expected this update to remove on the manager; only what the preview shows. */
  planned: string[];
  /** The stack's labels, for the job and its containers. */
  labels: Record<string, string>;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What one node kept and removed (node_images.py's answer). */
export interface NodeImages {
  node: string;
  /** Image ids kept: the serving image, the rollback target, the newest `keepImages`. */
  kept: string[];
  /** Image ids deleted from the node. */
  removed: string[];
  /** Image ids the stack let go of that the node keeps: another stack's tag, or a container, holds them. */
  held: string[];
}

/** What it records: its inputs, each node's answer, and the nodes that ran the image but could take no task. */
export interface SwarmImagesOutputs extends SwarmImagesInputs {
  nodes: NodeImages[];
  unreached: string[];
}

/** Swarm's task states after which a task never runs again. (An array: the closure serializer cannot carry a Set.) */
const ENDED: readonly string[] = ["complete", "failed", "rejected", "shutdown", "orphaned", "remove"];

interface RawTask {
  ID: string;
  NodeID?: string;
  Status?: { State?: string; Err?: string; ContainerStatus?: { ContainerID?: string; ExitCode?: number } };
  Spec?: { ContainerSpec?: { Image?: string } };
}

/**
 * The nodes to prune: those where a task of `service` ran `serving` (it had a container there, so
 * the image is there), and which can take a task now; and those of them that cannot (down, drained).
 */
export async function targetNodes(docker: Docker, service: string, serving: string): Promise<{ targets: string[]; unreached: string[]; others: string[] }> {
  const tasks = (await docker.listTasks({ filters: { service: [service] } })) as RawTask[];
  const ran = new Set(tasks.filter((t) => t.Spec?.ContainerSpec?.Image === serving && t.Status?.ContainerStatus?.ContainerID).map((t) => t.NodeID ?? ""));
  const nodes = (await docker.listNodes()) as { ID: string; Status?: { State?: string }; Spec?: { Availability?: string } }[];
  const available = (n: (typeof nodes)[number]) => n.Status?.State === "ready" && n.Spec?.Availability === "active";
  return {
    targets: nodes.filter((n) => ran.has(n.ID) && available(n)).map((n) => n.ID).sort(),
    unreached: nodes.filter((n) => ran.has(n.ID) && !available(n)).map((n) => n.ID).sort(),
    others: nodes.filter((n) => !ran.has(n.ID) || !available(n)).map((n) => n.ID).sort(),
  };
}

/** The job's service spec: once on every node but `exclude`, the backend image, the node's socket, confined. */
export function jobSpec(inputs: SwarmImagesInputs, name: string, exclude: readonly string[]): Record<string, unknown> {
  const labels = { ...inputs.labels, [JOB_LABEL]: inputs.service, "backend-delivery.role": "prune-job" };
  const spec = { project: inputs.project, repository: inputs.repository, keepImages: Number(inputs.keepImages), serving: inputs.serving, previous: inputs.previous ?? null, service: inputs.service };
  return {
    Name: name,
    Labels: labels,
    Mode: { Global: {} },
    TaskTemplate: {
      ContainerSpec: {
        Image: inputs.serving,
        Command: [IMAGE_PYTHON, "-I", "-B", "-c", NODE_SCRIPT, JSON.stringify(spec)],
        // Swarm fills in the node each task runs on; the script refuses a socket of another node.
        Env: ["NODE_ID={{.Node.ID}}"],
        // Root, and only for the socket: it is root:docker 0660, and the docker group's id differs
        // from node to node, so no fixed non-root uid:gid can open it everywhere. Root with every
        // capability dropped still opens it (it owns it); nothing else is left to it: a read-only
        // root, no capabilities, no published port (Swarm offers a service no `none` network), small
        // memory and process limits, and the script sets no-new-privileges on itself first (a Swarm
        // service cannot set it before API 1.46).
        User: "0:0",
        ReadOnly: true,
        CapabilityDrop: ["ALL"],
        Mounts: [{ Type: "bind", Source: NODE_DOCKER_SOCKET, Target: NODE_DOCKER_SOCKET }],
        Labels: labels,
      },
      Resources: { Limits: { MemoryBytes: 64 * 1024 * 1024, NanoCPUs: 500_000_000, Pids: 32 } },
      // Once: a failed run is reported, not retried.
      RestartPolicy: { Condition: "none" },
      Placement: { Constraints: exclude.map((node) => `node.id!=${node}`) },
      // The one line each task prints is read back through the manager: a driver it can read.
      LogDriver: { Name: "json-file", Options: { "max-size": "1m" } },
    },
  };
}

/** A node's answer, from its task's log: the last line that is a JSON object. */
export function parseAnswer(lines: readonly string[]): (Partial<NodeImages> & { error?: string }) | undefined {
  for (const line of [...lines].reverse()) {
    try {
      const value = JSON.parse(line.trim()) as unknown;
      if (typeof value === "object" && value !== null && !Array.isArray(value)) return value as Partial<NodeImages> & { error?: string };
    } catch {
      // not the answer
    }
  }
  return undefined;
}

/**
 * Removes the stack's pruning jobs (an interrupted run's, or this run's own), and waits a little for
 * the manager's containers of them to go (Swarm removes them on every node).
 */
async function removeJobs(docker: Docker, service: string): Promise<void> {
  const jobs = await docker.listServices({ filters: { label: [`${JOB_LABEL}=${service}`] } });
  await Promise.all(jobs.map((job) => docker.getService(job.ID ?? "").remove().catch(() => undefined)));
  const ids = jobs.map((job) => `com.docker.swarm.service.id=${job.ID ?? ""}`);
  for (let i = 0; i < 40 && ids.length > 0; i++) {
    const left = await Promise.all(ids.map((label) => docker.listContainers({ all: true, filters: { label: [label] } })));
    if (left.every((containers) => containers.length === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Runs the job on every node that ran the serving image, and returns what each kept and removed. */
export async function pruneNodes(inputs: SwarmImagesInputs): Promise<{ nodes: NodeImages[]; unreached: string[] }> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  await removeJobs(docker, inputs.service);
  const { targets, unreached, others } = await targetNodes(docker, inputs.service, inputs.serving);
  if (targets.length === 0) return { nodes: [], unreached };
  const name = `${inputs.service}-prune-${Buffer.from(crypto.getRandomValues(new Uint8Array(3))).toString("hex")}`;
  await docker.createService(jobSpec(inputs, name, others) as Docker.CreateServiceOptions);
  try {
    const deadline = Date.now() + JOB_DEADLINE_SECONDS * 1000;
    let tasks: RawTask[] = [];
    const ended = () => targets.every((node) => tasks.some((t) => t.NodeID === node && ENDED.includes(t.Status?.State ?? "")));
    while (!ended()) {
      if (Date.now() > deadline) {
        const states = targets.map((node) => `${node.slice(0, 12)}: ${tasks.find((t) => t.NodeID === node)?.Status?.State ?? "no task"}`).join(", ");
        throw new Error(`the image retention job ${name} did not finish on every node within ${JOB_DEADLINE_SECONDS} s (${states})`);
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
      tasks = (await docker.listTasks({ filters: { service: [name] } })) as RawTask[];
    }
    const nodes: NodeImages[] = [];
    const failures: string[] = [];
    for (const node of targets) {
      const task = tasks.find((t) => t.NodeID === node && ENDED.includes(t.Status?.State ?? "")) as RawTask;
      const lines = await taskLogs(docker, task.ID, 20).catch((error: unknown) => [`(logs unavailable: ${(error as Error).message})`]);
      const answer = parseAnswer(lines);
      if (task.Status?.State === "complete" && answer !== undefined && answer.error === undefined && Array.isArray(answer.kept)) {
        nodes.push({ node, kept: answer.kept, removed: answer.removed ?? [], held: answer.held ?? [] });
      } else {
        failures.push(`node ${node.slice(0, 12)}: ${answer?.error ?? task.Status?.Err ?? task.Status?.State}${answer === undefined ? ` (${lines.slice(-3).join(" | ") || "no output"})` : ""}`);
      }
    }
    if (failures.length > 0) {
      throw new Error(`image retention failed on ${failures.length} node(s); the new release serves, nothing else changed there: ${failures.join("; ")}`);
    }
    return { nodes, unreached };
  } finally {
    await removeJobs(docker, inputs.service);
  }
}

/** The inputs that make a new run; `planned` counts only when it names something. */
function changed(olds: SwarmImagesInputs, news: SwarmImagesInputs): string[] {
  const keys = ["project", "repository", "keepImages", "service", "serving", "previous", "dockerHost"] as const;
  const diffs: string[] = keys.filter((key) => (olds[key] ?? null) !== (news[key] ?? null));
  if (news.planned.length > 0) diffs.push("planned");
  return diffs;
}

/** The provider; see the module comment. */
export const swarmImagesProvider: pulumi.dynamic.ResourceProvider<SwarmImagesInputs, SwarmImagesOutputs> = {
  async diff(_id, olds, news) {
    return { changes: changed(olds, news).length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    return { id: `${inputs.service}-images`, outs: { ...inputs, ...(await pruneNodes(inputs)) } };
  },
  async update(_id, _olds, news) {
    return { outs: { ...news, ...(await pruneNodes(news)) } };
  },
  // The nodes keep the stack's tags, so that a stack of the same name adopts its images again; only
  // a job an interrupted run left is removed.
  async delete(_id, props) {
    await removeJobs(dockerClient(props.dockerHost, props.dockerSshOpts), props.service);
  },
};

/**
 * The stack's images on every node that ran its service's tasks, kept to the serving image, the
 * rollback target and the `keepImages` newest; see {@link swarmImagesProvider}. Register it after
 * the rollout check (`dependsOn` it), so a failed update never prunes.
 */
export class SwarmImages extends pulumi.dynamic.Resource {
  // `declare`, not class fields: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** What each node kept and removed in the last run. */
  declare public readonly nodes: pulumi.Output<NodeImages[]>;
  /** Nodes that ran the serving image but could take no task (down or drained) in the last run. */
  declare public readonly unreached: pulumi.Output<string[]>;

  constructor(name: string, args: { [K in keyof SwarmImagesInputs]: pulumi.Input<SwarmImagesInputs[K]> }, opts: pulumi.CustomResourceOptions = {}) {
    super(swarmImagesProvider, name, { ...args, nodes: undefined, unreached: undefined }, opts);
  }
}
