import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import { containerEnv } from "./envMapping";
import { hardeningProfile, withResources, type HardeningProfile, type ResourceLimits } from "./hardening";

/**
 * `cpus` spelled the way the Docker provider reads it back from the engine: whole numbers with one
 * decimal ("1.0"), others as they are ("0.5"). Any other spelling is a diff on every preview, and a
 * diff of `cpus` replaces the container.
 */
export function dockerCpus(cpus: number): string {
  return Number.isInteger(cpus) ? cpus.toFixed(1) : String(cpus);
}

/** Arguments of {@link BackendService}. */
export interface BackendServiceArgs {
  /** Pinned image reference to run (repo digest or local image id). */
  image: pulumi.Input<string>;
  /** The backend's `APP_ENV`. */
  appEnv: string;
  /** Port published on the Docker host's loopback interface. */
  hostPort: number;
  /** Port the backend listens on inside the container (`PORT`). */
  containerPort: number;
  /** Plain environment settings. */
  env?: Readonly<Record<string, string>>;
  /** Secret environment settings; each value should be a secret Output. */
  secrets: Readonly<Record<string, pulumi.Input<string>>>;
  /** Resource limits over the hardening profile's defaults. */
  resources?: Partial<ResourceLimits>;
  /** Extra container labels. */
  labels?: Readonly<Record<string, string>>;
  /** Hardening profile; the shared profile when unset. */
  profile?: HardeningProfile;
}

/**
 * The backend container with its network and data volume, locked down by the hardening profile.
 * The engine does not wait for the container here: the readiness check that follows proves it ready
 * and fails as soon as the container dies, with the container's own error (an engine-side `wait`
 * would block for its whole timeout first and report only "not healthy").
 */
export class BackendService extends pulumi.ComponentResource {
  /** The container's id; changes whenever the container is replaced. */
  public readonly containerId: pulumi.Output<string>;
  /** The container's name on the Docker host. */
  public readonly containerName: pulumi.Output<string>;
  /** Base URL on the Docker host, e.g. `http://127.0.0.1:8080`. */
  public readonly url: pulumi.Output<string>;
  /** Name of the data volume mounted at the profile's data path. */
  public readonly volumeName: pulumi.Output<string>;
  /** Name of the container's network. */
  public readonly networkName: pulumi.Output<string>;

  constructor(name: string, args: BackendServiceArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:BackendService", name, {}, opts);
    if (!Number.isInteger(args.hostPort) || args.hostPort < 1024 || args.hostPort > 65535) {
      throw new Error(`BackendService ${name}: hostPort must be an integer in 1024-65535`);
    }
    const profile = withResources(args.profile ?? hardeningProfile, args.resources);
    const labels: Record<string, string> = { "backend-delivery.component": name, ...args.labels };

    const network = new docker.Network(`${name}-network`, { name: `${name}-network` }, { parent: this });
    const volume = new docker.Volume(`${name}-data`, { name: `${name}-data` }, { parent: this });

    const container = new docker.Container(
      `${name}-container`,
      {
        name: `${name}-container`,
        image: args.image,
        envs: containerEnv({ appEnv: args.appEnv, port: args.containerPort, env: args.env ?? {}, secrets: args.secrets }),
        user: profile.user,
        readOnly: profile.readOnlyRootFilesystem,
        tmpfs: { ...profile.tmpfs },
        volumes: [{ volumeName: volume.name, containerPath: profile.dataPath }],
        capabilities: { drops: [...profile.capDrop], adds: [...profile.capAdd] },
        securityOpts: [...profile.securityOpts],
        memory: profile.resources.memoryMb,
        // Equal to memory: the container gets no swap on top of its limit.
        memorySwap: profile.resources.memoryMb,
        cpus: dockerCpus(profile.resources.cpus),
        // The provider has no pids-limit field; RLIMIT_NPROC on the container's non-root user is the
        // closest control it exposes (it counts that uid's processes and threads).
        ulimits: [{ name: "nproc", soft: profile.resources.pids, hard: profile.resources.pids }],
        restart: profile.restart,
        logDriver: profile.logDriver,
        logOpts: { ...profile.logOpts },
        stopSignal: profile.stopSignal,
        stopTimeout: profile.stopTimeoutSeconds,
        // Let in-flight requests finish on destroy and replace too, not just on `docker stop`.
        destroyGraceSeconds: profile.stopTimeoutSeconds,
        // Loopback only: the backend speaks plain HTTP; anything public belongs behind a TLS proxy.
        ports: [{ internal: args.containerPort, external: args.hostPort, ip: "127.0.0.1", protocol: "tcp" }],
        networksAdvanced: [{ name: network.name }],
        labels: Object.entries(labels)
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([label, value]) => ({ label, value })),
        mustRun: true,
      },
      {
        parent: this,
        // The host port and container name are fixed, so the old container must be gone before the
        // new one starts; the default create-before-delete would fail with "port is already
        // allocated". The price is a short gap in service during a replacement.
        deleteBeforeReplace: true,
      },
    );

    this.containerId = container.id;
    this.containerName = container.name;
    this.url = pulumi.output(`http://127.0.0.1:${args.hostPort}`);
    this.volumeName = volume.name;
    this.networkName = network.name;
    this.registerOutputs({
      containerId: this.containerId,
      containerName: this.containerName,
      url: this.url,
      volumeName: this.volumeName,
      networkName: this.networkName,
    });
  }
}
