import { createHash } from "node:crypto";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { BackendServiceArgs } from "../backendService";
import type { SwarmSettings } from "../config/schema";
import { terminatesTls, type Readiness, type TlsRecord } from "../contract";
import { endpointInputs } from "../docker/client";
import { plainSettings } from "../envMapping";
import { hardeningProfile, toHostConfig, withResources } from "../hardening";
import { FrontProxy } from "../proxy/frontProxy";
import { tlsRecord } from "../proxy/tlsStatus";
import { SwarmProxyConfig } from "./proxyConfig";
import { SwarmRollout } from "./rollout";
import {
  SERVICE_IGNORE_CHANGES,
  SETTINGS_FILE,
  releaseFingerprint,
  rolloutTimeoutSeconds,
  secretResourceName,
  serviceArgs,
  settingsFileText,
  type ConfigMount,
  type SecretMount,
} from "./serviceSpec";
import { specRelease } from "./tasks";

/** Arguments of {@link SwarmService}: the single-host target's, plus what only a Swarm service needs. */
export interface SwarmServiceArgs extends BackendServiceArgs {
  /**
   * What the tasks run: `<repo>@sha256:...`, which every node pulls from the registry, or the local
   * image id on a one-node swarm. (`image` is the same image on the manager, for the probe.)
   */
  serviceImage: pulumi.Input<string>;
  /** Replicas, placement and how updates roll (`service.replicas`, `.placement`, `.update`). */
  swarm: SwarmSettings;
  /** A tag per secret setting that changes with its value (config/load.ts `secretTags`): what names its Swarm secret. */
  secretTags: Readonly<Record<string, string>>;
  /** Registry credentials the nodes pull `serviceImage` with. */
  registryAuth?: { server: string; username: string; password: pulumi.Input<string> };
}

/** The `Host` the probes name: the backend always accepts the loopback address (envMapping.ts). */
const PROBE_HOST = "127.0.0.1";

/**
 * The backend as a replicated Docker Swarm service behind the stack's front proxy, with Swarm doing
 * the rollout: an overlay network, the stack's secrets as Swarm secrets (one per value: a new value
 * is a new secret, mounted under /run/secrets at the same file name), the service (endpoint mode
 * `dnsrr`, start-first updates gated by the image's health check and rolled back on failure), the
 * front proxy on the manager that `docker:host` names, forwarding to `tasks.<service>`, and the
 * rollout check that waits for Swarm and proves every task ready.
 *
 * The Docker provider's `convergeConfig` is left unset on purpose: a create that does not converge
 * would delete the service, and its tasks' logs with it, and the provider's own wait reports a
 * rollback without its cause. The rollout check waits instead, with a deadline, and names the
 * failed task's error line.
 */
export class SwarmService extends pulumi.ComponentResource {
  /** Base URL on the manager, e.g. `http://127.0.0.1:8080`. */
  public readonly url: pulumi.Output<string>;
  /** What the rollout check observed of every task of the release that serves. */
  public readonly readiness: pulumi.Output<Readiness>;
  /** The Swarm service's name; its tasks answer at `tasks.<name>` on the stack's network. */
  public readonly serviceName: pulumi.Output<string>;
  /** What the stack serves over TLS. */
  public readonly tls: pulumi.Output<TlsRecord>;

  constructor(name: string, args: SwarmServiceArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:SwarmService", name, {}, opts);
    if (args.tls !== undefined && terminatesTls(args.tls.mode)) {
      throw new Error(`SwarmService ${name}: TLS at the proxy (tls.mode ${args.tls.mode}) is not built for the Swarm target yet; end TLS upstream`);
    }
    const profile = withResources(hardeningProfile, args.resources);
    const labels = { ...args.labels, "backend-delivery.component": name };
    const host = endpointInputs(args.docker);

    // Attachable: the front proxy and the probe are plain containers on the manager.
    const network = new docker.Network(`${name}-network`, { name: `${name}-network`, driver: "overlay", attachable: true }, { parent: this });
    const mounts: (SecretMount & { tag: string })[] = Object.entries(args.secrets)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([setting, value]) => {
        const tag = args.secretTags[setting];
        if (tag === undefined) throw new Error(`SwarmService ${name}: secretTags has no tag for ${setting}`);
        // No `name`: Pulumi names it (create-before-delete); an explicit name makes the Docker
        // provider replace it delete-first, and the service with it.
        const secret = new docker.Secret(
          secretResourceName(name, setting, tag),
          {
            data: pulumi.secret(pulumi.output(value).apply((v) => Buffer.from(v, "utf8").toString("base64"))),
            labels: [{ label: "backend-delivery.component", value: name }],
          },
          { parent: this, additionalSecretOutputs: ["data"] },
        );
        return { secretId: secret.id, secretName: secret.name, fileName: setting, tag };
      });
    // The nodes pull the image with the stack's registry credentials, handed over by a provider of the
    // service's own rather than its `auth` block: a change of that block replaces the service,
    // delete-first, and a CI token that changes on every run would make every deploy an outage.
    const puller =
      args.registryAuth === undefined
        ? undefined
        : new docker.Provider(
            `${name}-swarm`,
            {
              ...(args.docker?.host === undefined ? {} : { host: args.docker.host }),
              ...(args.docker?.sshOpts === undefined ? {} : { sshOpts: [...args.docker.sshOpts] }),
              registryAuth: [{ address: args.registryAuth.server, username: args.registryAuth.username, password: pulumi.secret(args.registryAuth.password) }],
            },
            { parent: this },
          );
    // The plain settings as a file (a Swarm config, immutable like a secret: a change is a new one);
    // the environment holds PORT alone (see serviceSpec.ts for why).
    const { PORT: port = String(args.containerPort), ...settings } = plainSettings({ appEnv: args.appEnv, port: args.containerPort, env: args.env ?? {} });
    const settingsText = settingsFileText(settings);
    // With the image's digest (IMAGE_DIGEST), known only once staging has built it, so not in the name:
    // a new image makes a new config all the same (`data` replaces it, create-before-delete).
    const settingsData = pulumi
      .output(args.imageDigest)
      .apply((digest) => Buffer.from(settingsFileText({ ...settings, IMAGE_DIGEST: digest }), "utf8").toString("base64"));
    const settingsConfig = new docker.ServiceConfig(
      `${name}-settings-${createHash("sha256").update(settingsText).digest("hex").slice(0, 12)}`,
      { data: settingsData },
      { parent: this },
    );
    const configs: ConfigMount[] = [{ configId: settingsConfig.id, configName: settingsConfig.name, fileName: SETTINGS_FILE }];
    const env = { PORT: port };
    // What the tasks of this release carry (the rollout check waits for it), and everything that makes them.
    const release = pulumi
      .all([args.serviceImage, settingsConfig.name, ...mounts.map((m) => m.secretName)])
      .apply(([image, config, ...secretNames]) => specRelease(image, secretNames, [config]));
    const revision = release.apply((r) => releaseFingerprint({ release: r, user: profile.user, resources: profile.resources, placement: args.swarm.placement }));
    const service = new docker.Service(
      `${name}-service`,
      serviceArgs({
        name: `${name}-app`,
        image: args.serviceImage,
        env,
        secrets: mounts,
        configs,
        profile,
        swarm: args.swarm,
        network: network.id,
        labels,
      }),
      { parent: this, ignoreChanges: SERVICE_IGNORE_CHANGES, ...(puller === undefined ? {} : { provider: puller }) },
    );

    const proxy = new FrontProxy(
      `${name}-proxy`,
      { image: args.proxyImage, hostPort: args.hostPort, network: network.name, labels: { ...args.labels, "backend-delivery.role": "proxy" } },
      { parent: this },
    );
    const proxyConfig = new SwarmProxyConfig(
      `${name}-proxy-config`,
      { proxyContainerId: proxy.containerId, service: service.name, port: args.containerPort, hsts: args.appEnv !== "development", ...host },
      { parent: this },
    );
    const rollout = new SwarmRollout(
      `${name}-rollout`,
      {
        service: service.name,
        serviceId: service.id,
        release,
        revision,
        replicas: args.swarm.replicas,
        network: network.name,
        timeoutSeconds: rolloutTimeoutSeconds(args.swarm, args.readiness.timeoutSeconds),
        ...(args.readiness.timeoutHint === undefined ? {} : { timeoutHint: args.readiness.timeoutHint }),
        probeImage: args.image,
        user: profile.user,
        hostConfig: toHostConfig({ ...profile, resources: { memoryMb: 128, cpus: 1, pids: 64 } }, ""),
        labels: { ...args.labels, "backend-delivery.role": "probe" },
        port: args.containerPort,
        path: args.readiness.path,
        imageDigest: args.imageDigest,
        readinessTimeoutSeconds: args.readiness.timeoutSeconds,
        intervalMs: args.readiness.intervalMs,
        successThreshold: args.readiness.successThreshold,
        hostHeader: PROBE_HOST,
        proxyContainer: proxy.containerName,
        proxyConfiguredAt: proxyConfig.configuredAt,
        ...host,
      },
      { parent: this },
    );

    const tls = args.tls;
    // TLS ended by a load balancer in front: clients use the public name, over HTTPS.
    this.url = tls?.mode === "upstream" && tls.domain !== undefined ? pulumi.output(`https://${tls.domain}`) : proxy.url;
    this.readiness = rollout.readiness;
    this.serviceName = service.name;
    this.tls = pulumi.output(tlsRecord(tls?.mode ?? "off", tls?.domain, undefined));
    this.registerOutputs({ url: this.url, readiness: this.readiness, serviceName: this.serviceName, tls: this.tls });
  }
}
