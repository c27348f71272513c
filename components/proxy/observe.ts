/**
 * What the stack's proxy serves over TLS right now, seen through it at the program's start: a TLS
 * handshake to the proxy from inside a running release of the stack (through the Docker API, as the
 * readiness probe does; nothing assumes the proxy is reachable from where `pulumi` runs), or, on the
 * Swarm target, from a short-lived probe container on the stack's network (swarm/observe.ts). The program
 * logs it for the pull-request comment, the prod gate holds it against `promotion.minCertificateDays`,
 * and it is the `tls` output of an update that does not switch the proxy (a renewal since the last
 * one shows there).
 */
import { dockerClient, type DockerEndpoint } from "../docker/client";
import { PROXY_HTTPS_PORT } from "./caddyConfig";
import { tlsProber } from "./tlsProbe";

/** What the look found: the served certificate (DER, base64), or why there is none. */
export type Observation = { der: string; at: string } | { unobserved: string; at: string };

/** Where to look through: the stack's proxy. */
export interface ProxyToObserve {
  endpoint: DockerEndpoint;
  /** The proxy's container name on the stack's network. */
  proxyContainer: string;
  /** The name the handshake asks for (SNI). */
  domain: string;
}

/** Where to look on the single-host target: its proxy, and its releases (one of which asks). */
export interface ObserveArgs extends ProxyToObserve {
  /** The `backend-delivery.component` label of the stack's releases (the service's name). */
  component: string;
}

/** The `Host` the probe names: one the backend always accepts. */
const PROBE_HOST = "127.0.0.1";

/** Looks through the proxy from a running release; never throws (a failure is an observation too). */
export async function observeServedCertificate(args: ObserveArgs): Promise<Observation> {
  const at = new Date().toISOString();
  let releases: string[];
  try {
    const docker = dockerClient(args.endpoint.host, args.endpoint.sshOpts);
    const found = await docker.listContainers({
      filters: { label: [`backend-delivery.component=${args.component}`, "backend-delivery.role=release"], status: ["running"] },
    });
    releases = found.map((c) => c.Id);
  } catch (error) {
    return { unobserved: `the Docker engine did not list the stack's releases: ${(error as Error).message}`, at };
  }
  if (releases.length === 0) return { unobserved: "no release of this stack runs yet", at };
  return servedThrough(releases, args, at);
}

/**
 * A TLS handshake to the proxy from each of `containers` (each on the proxy's network, with the
 * backend image's Python) until one completes: the certificate served, or why none was seen.
 */
export async function servedThrough(containers: readonly string[], args: ProxyToObserve, at: string): Promise<Observation> {
  let last = "";
  // A failed candidate may sit beside the release that serves: any running one can ask.
  for (const container of containers) {
    try {
      const answer = await tlsProber(container, args.endpoint).get(args.proxyContainer, PROXY_HTTPS_PORT, args.domain, "/healthz", PROBE_HOST, 5000);
      if (answer.certificate !== "") return { der: answer.certificate, at };
      last = "the proxy completed the handshake without a certificate";
    } catch (error) {
      last = (error as Error).message;
    }
  }
  return { unobserved: `the proxy served no certificate for ${args.domain} (${last})`, at };
}
