/**
 * The Swarm target's check at the program's start, in previews too: `docker:host` must reach a Swarm
 * manager (an engine not in swarm mode, or a worker, cannot create services), and a swarm of more
 * than one node needs a registry, since another node can only pull the image. Refused before
 * anything changes, with what to run.
 */
import type Docker from "dockerode";
import * as pulumi from "@pulumi/pulumi";
import { formatRefusal, type Problem } from "../problems";
import { dockerClient, type DockerEndpoint } from "../docker/client";

/** What the engine's `/info` and `/nodes` say about its swarm. */
export interface SwarmFacts {
  /** `Swarm.LocalNodeState`: inactive, pending, active, error, locked. */
  state: string;
  /** Whether this engine is a manager (`Swarm.ControlAvailable`). */
  manager: boolean;
  /** The managers' addresses (`Swarm.RemoteManagers[].Addr`), as a worker knows them. */
  managers: string[];
  /** Nodes that can take tasks (ready and active); counted on a manager only. */
  activeNodes?: number;
}

/** The facts, from the engine. */
export async function swarmFacts(docker: Docker): Promise<SwarmFacts> {
  const info = (await docker.info()) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean; RemoteManagers?: { Addr?: string }[] | null } };
  const swarm = info.Swarm ?? {};
  const facts: SwarmFacts = {
    state: swarm.LocalNodeState ?? "inactive",
    manager: swarm.ControlAvailable === true,
    managers: (swarm.RemoteManagers ?? []).map((m) => m.Addr ?? "").filter((a) => a !== ""),
  };
  if (facts.state === "active" && facts.manager) {
    const nodes = (await docker.listNodes()) as { Status?: { State?: string }; Spec?: { Availability?: string } }[];
    facts.activeNodes = nodes.filter((n) => n.Status?.State === "ready" && n.Spec?.Availability === "active").length;
  }
  return facts;
}

/** What is wrong with running the stack's service on this engine, each with its fix; none when it can. */
export function swarmProblems(facts: SwarmFacts, host: string, stack: string, registry: boolean): Problem[] {
  const at = ["docker:host"];
  if (facts.state !== "active") {
    return [
      {
        path: at,
        message: `the Docker engine at ${host} is not a Swarm manager (swarm state: ${facts.state}), and service.orchestrator is swarm`,
        fix: `on that server run \`docker swarm init --advertise-addr <its address>\` once (other servers join with \`docker swarm join\`), or use \`pulumi config set --stack ${stack} --path service.orchestrator container\``,
      },
    ];
  }
  if (!facts.manager) {
    const managers = facts.managers.length > 0 ? facts.managers.map((a) => a.replace(/:\d+$/, "")).join(", ") : "(none known)";
    return [
      {
        path: at,
        message: `the Docker engine at ${host} is a Swarm worker; services are created on a manager (managers: ${managers})`,
        fix: `pulumi config set --stack ${stack} docker:host ssh://<user>@<a manager>   (or promote this node: \`docker node promote <node>\` on a manager)`,
      },
    ];
  }
  if ((facts.activeNodes ?? 1) > 1 && !registry) {
    return [
      {
        path: ["image", "registry", "server"],
        message: `the swarm has ${facts.activeNodes} active nodes, and the image reaches another node only through a registry (it is local to this one)`,
        fix: `pulumi config set --stack ${stack} --path image.registry.server <registry> (with .username and registryPassword), or limit the service to this node: --path 'service.placement.constraints[0]' node.role==manager`,
      },
    ];
  }
  return [];
}

/** Refuses, with {@link swarmProblems}, an engine that cannot run the stack's Swarm service. */
export async function checkSwarmManager(endpoint: DockerEndpoint, stack: string, registry: boolean): Promise<SwarmFacts> {
  const host = endpoint.host ?? process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock";
  let facts: SwarmFacts;
  try {
    facts = await swarmFacts(dockerClient(endpoint.host, endpoint.sshOpts));
  } catch (error) {
    const problem: Problem = { path: ["docker:host"], message: `cannot ask the Docker engine at ${host} about its swarm: ${(error as Error).message}`, fix: "check docker:host and that the engine runs" };
    throw new pulumi.RunError(formatRefusal(`stack ${stack} cannot run its Swarm service`, "problem", "nothing was changed", [problem]));
  }
  const problems = swarmProblems(facts, host, stack, registry);
  if (problems.length > 0) throw new pulumi.RunError(formatRefusal(`stack ${stack} cannot run its Swarm service`, "problem", "nothing was changed", problems));
  return facts;
}
