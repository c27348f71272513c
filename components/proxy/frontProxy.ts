import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { dockerCpus } from "../docker/provider";
import { proxyProfile, type HardeningProfile } from "../hardening";
import { PROXY_CONFIG_DIR, PROXY_DATA_DIR, PROXY_HTTPS_PORT, PROXY_LISTEN_PORT } from "./caddyConfig";

/** RLIMIT_NPROC of the proxy's user, counted over every proxy on the host (eight of the cgroup limit each). */
export const PROXY_USER_NPROC = 8 * proxyProfile.resources.pids;

/** Arguments of {@link FrontProxy}. */
export interface FrontProxyArgs {
  /** The Caddy 2 image (the official `caddy`, or a local one built from Debian's package). */
  image: pulumi.Input<string>;
  /**
   * Plain-HTTP port on the Docker host: on its loopback interface, the service's one address; with
   * `tls`, on every interface, where it redirects to HTTPS and answers ACME challenges (then a port
   * below 1024 is allowed: the engine publishes it, the proxy listens unprivileged inside).
   */
  hostPort: number;
  /** TLS at the proxy: the host name it serves, and the host port HTTPS is published on (every interface). */
  tls?: { domain: string; httpsPort: number };
  /** The stack's network, where the releases are. */
  network: pulumi.Input<string>;
  /** Container labels. */
  labels?: Readonly<Record<string, string>>;
  /** Hardening profile; the shared proxy profile when unset. */
  profile?: HardeningProfile;
}

/**
 * The stack's front proxy: one long-lived Caddy 2 container that owns the host port and forwards to
 * whichever release the route (route.ts) switched it to. It runs with the proxy's hardening profile,
 * its admin endpoint listens inside its own container only, and its configuration lives on a volume,
 * so that a proxy the engine restarts (or a new proxy container: a new image or host port) resumes
 * the release it served; the route switches a new one again all the same. Its data (certificates,
 * the ACME account, Caddy's internal CA, the route's certificate files) lives on a volume of its own,
 * so a restarted or replaced proxy keeps them: no new issuance, no new internal root.
 */
export class FrontProxy extends pulumi.ComponentResource {
  /** The container's name: its host name on the stack's network. */
  public readonly containerName: pulumi.Output<string>;
  /** The container's id; a new one means the route must switch the new proxy too. */
  public readonly containerId: pulumi.Output<string>;
  /** What it serves: `http://127.0.0.1:<hostPort>`, or with TLS `https://<domain>[:<httpsPort>]`. */
  public readonly url: pulumi.Output<string>;

  constructor(name: string, args: FrontProxyArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:FrontProxy", name, {}, opts);
    const lowest = args.tls === undefined ? 1024 : 1;
    if (!Number.isInteger(args.hostPort) || args.hostPort < lowest || args.hostPort > 65535) {
      throw new Error(`FrontProxy ${name}: hostPort must be an integer in ${lowest}-65535${args.tls === undefined ? " (below 1024 only with TLS at the proxy)" : ""}`);
    }
    const httpsPort = args.tls?.httpsPort;
    if (httpsPort !== undefined && (!Number.isInteger(httpsPort) || httpsPort < 1 || httpsPort > 65535 || httpsPort === args.hostPort)) {
      throw new Error(`FrontProxy ${name}: tls.httpsPort must be an integer in 1-65535 other than hostPort`);
    }
    const profile = args.profile ?? proxyProfile;
    // Pulled when the engine lacks it (the official image); a local image is used as it is.
    const image = new docker.RemoteImage(`${name}-image`, { name: args.image, keepLocally: true }, { parent: this });
    const config = new docker.Volume(`${name}-config`, { name: `${name}-config` }, { parent: this });
    const data = new docker.Volume(`${name}-data`, { name: `${name}-data` }, { parent: this });
    const container = new docker.Container(
      name,
      {
        name,
        image: image.imageId,
        // The configuration the route last switched to, or none yet (then only the admin endpoint
        // listens until the first switch).
        command: ["caddy", "run", "--resume"],
        envs: [`XDG_CONFIG_HOME=${PROXY_CONFIG_DIR}`, "XDG_DATA_HOME=/data"],
        user: profile.user,
        readOnly: profile.readOnlyRootFilesystem,
        tmpfs: { ...profile.tmpfs },
        volumes: [
          { volumeName: config.name, containerPath: profile.dataPath },
          { volumeName: data.name, containerPath: PROXY_DATA_DIR },
        ],
        capabilities: { drops: [...profile.capDrop], adds: [...profile.capAdd] },
        securityOpts: [...profile.securityOpts],
        memory: profile.resources.memoryMb,
        memorySwap: profile.resources.memoryMb,
        cpus: dockerCpus(profile.resources.cpus),
        // The Docker provider has no pids-limit field: the route sets the engine's, the cgroup's own
        // (route.ts). RLIMIT_NPROC counts the user's processes across the whole host: the proxy's uid is
        // its own (not the releases'), so this one caps the host's proxies together, eight stacks' worth.
        ulimits: [{ name: "nproc", soft: PROXY_USER_NPROC, hard: PROXY_USER_NPROC }],
        restart: profile.restart,
        logDriver: profile.logDriver,
        logOpts: { ...profile.logOpts },
        stopSignal: profile.stopSignal,
        stopTimeout: profile.stopTimeoutSeconds,
        destroyGraceSeconds: profile.stopTimeoutSeconds,
        // Without TLS at the proxy, loopback only: plain HTTP, and anything public belongs behind TLS
        // (a load balancer in front). With it, both ports on every interface: they are the service.
        ports:
          httpsPort === undefined
            ? [{ internal: PROXY_LISTEN_PORT, external: args.hostPort, ip: "127.0.0.1", protocol: "tcp" }]
            : [
                { internal: PROXY_LISTEN_PORT, external: args.hostPort, ip: "0.0.0.0", protocol: "tcp" },
                { internal: PROXY_HTTPS_PORT, external: httpsPort, ip: "0.0.0.0", protocol: "tcp" },
              ],
        networksAdvanced: [{ name: args.network }],
        labels: Object.entries({ "backend-delivery.component": name, ...args.labels })
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([label, value]) => ({ label, value })),
        mustRun: true,
      },
      { parent: this },
    );
    this.containerName = container.name;
    this.containerId = container.id;
    this.url = pulumi.output(
      args.tls === undefined ? `http://127.0.0.1:${args.hostPort}` : `https://${args.tls.domain}${args.tls.httpsPort === 443 ? "" : `:${args.tls.httpsPort}`}`,
    );
    this.registerOutputs({ containerName: this.containerName, containerId: this.containerId, url: this.url });
  }
}
