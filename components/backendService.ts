import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { Readiness, TlsMode, TlsRecord } from "./contract";
import { endpointInputs, type DockerEndpoint } from "./docker/client";
import { containerEnv } from "./envMapping";
import { hardeningProfile, proxyProfile, withResources, type ResourceLimits } from "./hardening";
import { FrontProxy } from "./proxy/frontProxy";
import type { Observation } from "./proxy/observe";
import { ProxyRoute } from "./proxy/route";
import { routeTls, stackUrl, terminatedAtProxy, tlsOutput } from "./proxy/stackTls";
import { ReadinessCheck } from "./readiness/check";
import { ReleaseImages } from "./release/imagesProvider";
import { AppRelease } from "./release/release";

/** How a release is proven ready. */
export interface ReadinessSettings {
  /** Readiness path, e.g. /readyz. */
  path: string;
  /** How long to wait for a new release to become ready. */
  timeoutSeconds: number;
  /** Pause between two probes. */
  intervalMs: number;
  /** Consecutive HTTP 200 answers required. */
  successThreshold: number;
  /** How to give the check more time, in the words of whoever set `timeoutSeconds`. */
  timeoutHint?: string;
}

/** How TLS ends for the stack (`proxy.*`). */
export interface ServiceTls {
  mode: TlsMode;
  /** The public host name; required where the proxy terminates TLS. */
  domain?: string;
  /** Host port for HTTPS, where the proxy terminates TLS. */
  httpsPort: number;
  /** `acme`: the directory, the account's email, the CA root of the directory's HTTPS. */
  acme?: { directory: string; email?: string; caRoot?: string };
  /** `certificate`: the chain, leaf first (PEM), and its private key (a secret Output). */
  certificate?: string;
  privateKey?: pulumi.Input<string>;
  /** What the proxy served when the program started: the `tls` record of an update that does not switch it. */
  observed?: Observation;
}

/** What the stack's Docker host keeps of its images once a new release serves (release/images.ts). */
export interface ImageRetention {
  /** The project whose label an image must carry. */
  project: string;
  /** The stack's own tag repository. */
  repository: string;
  /** The newest images kept besides the serving one and the rollback target. */
  keepImages: number;
  /** The rollback target after this update, as the host knows it. */
  previous?: pulumi.Input<string | undefined>;
  /** What the program expects the update to remove: shown in the preview. */
  planned: pulumi.Input<string[]>;
}

/** Arguments of {@link BackendService}. */
export interface BackendServiceArgs {
  /** Pinned image to run (repo digest or local image id). */
  image: pulumi.Input<string>;
  /** Digest of that image (sha256:...), for the readiness record. */
  imageDigest: pulumi.Input<string>;
  /** The backend's `APP_ENV`. */
  appEnv: string;
  /** Port published on the Docker host's loopback interface, owned by the front proxy. */
  hostPort: number;
  /** Port the backend listens on inside its container (`PORT`). */
  containerPort: number;
  /** Plain environment settings. */
  env?: Readonly<Record<string, string>>;
  /** Secret environment settings; each value should be a secret Output. */
  secrets: Readonly<Record<string, pulumi.Input<string>>>;
  /** Resource limits over the hardening profile's defaults. */
  resources?: Partial<ResourceLimits>;
  /** The front proxy's image (Caddy 2). */
  proxyImage: pulumi.Input<string>;
  /** How TLS ends; plain HTTP at the proxy when unset. */
  tls?: ServiceTls;
  /** How each release is proven ready. */
  readiness: ReadinessSettings;
  /** Extra container labels. */
  labels?: Readonly<Record<string, string>>;
  /** The engine (`docker:host`, `docker:sshOpts`), for the parts that talk to it themselves. */
  docker?: DockerEndpoint;
  /** Keep the host's images of the stack in bounds after each switch; nothing is removed when unset. */
  retention?: ImageRetention;
}

/** The front proxy's container name for the service `name`: its host name on the stack's network. */
export function proxyContainerName(name: string): string {
  return `${name}-proxy`;
}

/** The name the front proxy forwards to on the stack's network: the release that serves answers to it (proxy/route.ts). */
export function servingAlias(name: string): string {
  return `${name}-serving`;
}

/** The `Host` the probes of both targets name: the backend always accepts the loopback address (envMapping.ts). */
export const PROBE_HOST = "127.0.0.1";

/**
 * The backend as a stack runs it, with no request lost to a deploy: two networks, a data volume, the
 * front proxy that owns the host port, and one release container per release. One `pulumi up` of a
 * change: the new release starts beside the old one, on the egress network only; the readiness check
 * proves it directly; the route joins it to the stack's network under the name the proxy forwards
 * to, verifies through the proxy that it answers, and stops the old release (SIGTERM; in-flight
 * requests finish), which Pulumi deletes at the end of the update. A failure before the switch
 * leaves the old release serving and the outputs describing it.
 */
export class BackendService extends pulumi.ComponentResource {
  /** What clients use: `http://127.0.0.1:<hostPort>`, or `https://<domain>[:<port>]` with TLS (at the proxy or in front). */
  public readonly url: pulumi.Output<string>;
  /** What the stack serves over TLS, observed through the proxy. */
  public readonly tls: pulumi.Output<TlsRecord>;
  /** What the readiness check observed of the release that serves. */
  public readonly readiness: pulumi.Output<Readiness>;
  /** The container of the release that serves. */
  public readonly releaseName: pulumi.Output<string>;
  /** When the proxy was verified to send traffic to that release. */
  public readonly switchedAt: pulumi.Output<string>;

  constructor(name: string, args: BackendServiceArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:BackendService", name, {}, opts);
    const profile = withResources(hardeningProfile, args.resources);
    const labels = { ...args.labels };
    const hsts = args.appEnv !== "development";
    const host = endpointInputs(args.docker);

    const network = new docker.Network(`${name}-network`, { name: `${name}-network` }, { parent: this });
    // Where each release starts and is proven ready, out of the proxy's reach until the route joins
    // it to the stack's network. Its name sorts before the stack network's: Docker routes a container
    // through the first of its networks by name, so joining the stack's network later leaves the
    // release's default route, and its connections to the database, as they are.
    const egress = new docker.Network(`${name}-egress`, { name: `${name}-egress` }, { parent: this });
    const volume = new docker.Volume(`${name}-data`, { name: `${name}-data` }, { parent: this });
    const tls = args.tls;
    const atProxy = terminatedAtProxy(`BackendService ${name}`, tls);
    const proxy = new FrontProxy(
      proxyContainerName(name),
      {
        image: args.proxyImage,
        hostPort: args.hostPort,
        network: network.name,
        labels: { ...labels, "backend-delivery.role": "proxy" },
        ...(atProxy === undefined ? {} : { tls: { domain: atProxy.domain, httpsPort: atProxy.httpsPort } }),
      },
      { parent: this },
    );
    const release = new AppRelease(
      `${name}-release`,
      {
        namePrefix: `${name}-app`,
        image: args.image,
        env: containerEnv({
          appEnv: args.appEnv,
          port: args.containerPort,
          env: args.env ?? {},
          secrets: args.secrets,
          ...(tls?.domain === undefined ? {} : { publicHost: tls.domain }),
          imageDigest: args.imageDigest,
        }),
        labels: { ...labels, "backend-delivery.component": name, "backend-delivery.role": "release" },
        profile,
        dataVolume: volume.name,
        network: egress.name,
        ...(args.docker === undefined ? {} : { docker: args.docker }),
      },
      // Deleted before the stack's network, which the route joined it to.
      { parent: this, dependsOn: [network] },
    );
    const check = new ReadinessCheck(
      `${name}-readiness`,
      {
        containerName: release.name,
        containerId: release.containerId,
        port: args.containerPort,
        imageDigest: args.imageDigest,
        path: args.readiness.path,
        timeoutSeconds: args.readiness.timeoutSeconds,
        intervalMs: args.readiness.intervalMs,
        successThreshold: args.readiness.successThreshold,
        hostHeader: PROBE_HOST,
        ...(args.readiness.timeoutHint === undefined ? {} : { timeoutHint: args.readiness.timeoutHint }),
        ...host,
      },
      { parent: this },
    );
    const route = new ProxyRoute(
      `${name}-route`,
      {
        proxyContainer: proxy.containerName,
        proxyContainerId: proxy.containerId,
        releaseName: release.name,
        releaseId: release.containerId,
        releasePort: args.containerPort,
        network: network.name,
        servingAlias: servingAlias(name),
        readyAt: check.readiness.apply((r) => r.checkedAt),
        hsts,
        hostHeader: PROBE_HOST,
        ...(atProxy === undefined ? {} : { tls: routeTls(atProxy), proxyUser: proxyProfile.user, tlsTimeoutSeconds: args.readiness.timeoutSeconds }),
        ...host,
      },
      { parent: this },
    );

    if (args.retention !== undefined) {
      const { project, repository, keepImages, previous, planned } = args.retention;
      // After the switch only: a failed update never removes anything.
      new ReleaseImages(
        `${name}-images`,
        { project, repository, keepImages, serving: args.image, ...(previous === undefined ? {} : { previous }), planned, ...host },
        { parent: this, dependsOn: [route] },
      );
    }

    this.url = stackUrl(tls, proxy.url);
    // What the route saw when it switched, or, when this update did not switch, what was served at its start.
    this.tls = tlsOutput(tls, atProxy, route.switchedAt, route.servedCertificate);
    // The record goes out only once traffic reaches the release it describes.
    this.readiness = pulumi.all([check.readiness, route.switchedAt]).apply(([readiness]) => readiness);
    this.releaseName = release.name;
    this.switchedAt = route.switchedAt;
    this.registerOutputs({ url: this.url, readiness: this.readiness, releaseName: this.releaseName, switchedAt: this.switchedAt, tls: this.tls });
  }
}
