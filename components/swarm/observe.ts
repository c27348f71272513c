/**
 * What a Swarm stack's proxy serves over TLS, seen through it at the program's start (see
 * proxy/observe.ts): the service's tasks are not containers on the manager (they may all run on
 * workers), so the handshake is made from a short-lived probe container on the manager, on the
 * stack's attachable overlay network, with the image the service runs (the manager holds it: the
 * program pulls it there for the rollout's probe).
 */
import { dockerClient } from "../docker/client";
import type { EngineHostConfig } from "../hardening";
import { servedThrough, type Observation, type ProxyToObserve } from "../proxy/observe";
import { withProbe } from "./probe";

/** Where to look on the Swarm target: its proxy, its service and network, and how the probe runs. */
export interface SwarmObserveArgs extends ProxyToObserve {
  service: string;
  network: string;
  /** The probe container's user, engine settings and labels (probe.ts `probeConfinement`). */
  user: string;
  hostConfig: EngineHostConfig;
  labels: Record<string, string>;
}

/** Looks through the proxy from a probe container; never throws (a failure is an observation too). */
export async function observeSwarmServedCertificate(args: SwarmObserveArgs): Promise<Observation> {
  const at = new Date().toISOString();
  const docker = dockerClient(args.endpoint.host, args.endpoint.sshOpts);
  let image: string | undefined;
  try {
    const info = (await docker.getService(args.service).inspect()) as { Spec?: { TaskTemplate?: { ContainerSpec?: { Image?: string } } } };
    image = info.Spec?.TaskTemplate?.ContainerSpec?.Image;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return { unobserved: "no release of this stack runs yet", at };
    return { unobserved: `the Docker engine did not show the stack's service: ${(error as Error).message}`, at };
  }
  if (image === undefined) return { unobserved: `service ${args.service} names no image`, at };
  const spec = { service: args.service, image, network: args.network, user: args.user, hostConfig: args.hostConfig, labels: args.labels };
  try {
    return await withProbe(docker, spec, (probe) => servedThrough([probe], args, at));
  } catch (error) {
    return { unobserved: `no probe container could look through the proxy: ${(error as Error).message}`, at };
  }
}
