import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { dockerCpus } from "../docker/provider";
import { proxyProfile, type HardeningProfile } from "../hardening";
import { PROXY_CONFIG_DIR, PROXY_LISTEN_PORT } from "./caddyConfig";

/** Arguments of {@link FrontProxy}. */
export interface FrontProxyArgs {
  /** The Caddy 2 image (the official `caddy`, or a local one built from Debian's package). */
  image: pulumi.Input<string>;
  /** Port published on the Docker host's loopback interface: the service's one address. */
  hostPort: number;
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
 * the release it served; the route switches a new one again all the same.
 */
export class FrontProxy extends pulumi.ComponentResource {
  /** The container's name: its host name on the stack's network. */
  public readonly containerName: pulumi.Output<string>;
  /** The container's id; a new one means the route must switch the new proxy too. */
  public readonly containerId: pulumi.Output<string>;
  /** Base URL on the Docker host, e.g. `http://127.0.0.1:8080`. */
  public readonly url: pulumi.Output<string>;

  constructor(name: string, args: FrontProxyArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:FrontProxy", name, {}, opts);
    if (!Number.isInteger(args.hostPort) || args.hostPort < 1024 || args.hostPort > 65535) {
      throw new Error(`FrontProxy ${name}: hostPort must be an integer in 1024-65535`);
    }
    const profile = args.profile ?? proxyProfile;
    // Pulled when the engine lacks it (the official image); a local image is used as it is.
    const image = new docker.RemoteImage(`${name}-image`, { name: args.image, keepLocally: true }, { parent: this });
    const config = new docker.Volume(`${name}-config`, { name: `${name}-config` }, { parent: this });
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
        volumes: [{ volumeName: config.name, containerPath: profile.dataPath }],
        capabilities: { drops: [...profile.capDrop], adds: [...profile.capAdd] },
        securityOpts: [...profile.securityOpts],
        memory: profile.resources.memoryMb,
        memorySwap: profile.resources.memoryMb,
        cpus: dockerCpus(profile.resources.cpus),
        // The Docker provider has no pids-limit field: the route sets the engine's (route.ts). Not
        // RLIMIT_NPROC: it counts the user's processes across the host, the releases' included.
        restart: profile.restart,
        logDriver: profile.logDriver,
        logOpts: { ...profile.logOpts },
        stopSignal: profile.stopSignal,
        stopTimeout: profile.stopTimeoutSeconds,
        destroyGraceSeconds: profile.stopTimeoutSeconds,
        // Loopback only: plain HTTP; anything public belongs behind TLS (terminated here later, or in front).
        ports: [{ internal: PROXY_LISTEN_PORT, external: args.hostPort, ip: "127.0.0.1", protocol: "tcp" }],
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
    this.url = pulumi.output(`http://127.0.0.1:${args.hostPort}`);
    this.registerOutputs({ containerName: this.containerName, containerId: this.containerId, url: this.url });
  }
}
