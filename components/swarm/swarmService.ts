import { createHash } from "node:crypto";
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import type { SwarmSettings } from "../config/schema";
import { PROBE_HOST, proxyContainerName, type BackendServiceArgs } from "../backendService";
import type { Readiness, TlsRecord } from "../contract";
import { endpointInputs } from "../docker/client";
import { plainSettings } from "../envMapping";
import { hardeningProfile, proxyProfile, withResources } from "../hardening";
import { FrontProxy } from "../proxy/frontProxy";
import { routeTls, stackUrl, terminatedAtProxy, tlsOutput } from "../proxy/stackTls";
import { SwarmImages } from "./nodeImages";
import { probeConfinement } from "./probe";
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

/** The names of the Swarm objects of the service component `name`: its service (`tasks.<service>` on the network) and overlay network. */
export function swarmNames(name: string): { service: string; network: string } {
  return { service: `${name}-app`, network: `${name}-network` };
}

/**
 * The backend as a replicated Docker Swarm service behind the stack's front proxy, with Swarm doing
 * the rollout: an overlay network, the stack's secrets as Swarm secrets (one per value: a new value
 * is a new secret, mounted under /run/secrets at the same file name), the service (endpoint mode
 * `dnsrr`, start-first updates gated by the image's health check and rolled back on failure), the
 * front proxy on the manager that `docker:host` names, the rollout check that waits for Swarm and
 * proves every task ready, and then the proxy's configuration, forwarding to `tasks.<service>` (over
 * HTTPS with TLS at the proxy, as on one host), loaded when it changes and looked through on every
 * rollout.
 *
 * The Docker provider's `convergeConfig` is left unset on purpose: a create that does not converge
 * would delete the service, and its tasks' logs with it, and the provider's own wait reports a
 * rollback without its cause. The rollout check waits instead, with a deadline, and names the
 * failed task's error line.
 */
export class SwarmService extends pulumi.ComponentResource {
  /** What clients use: `http://127.0.0.1:<hostPort>` on the manager, or `https://<domain>[:<port>]` with TLS (at the proxy or in front). */
  public readonly url: pulumi.Output<string>;
  /** What the rollout check observed of every task of the release that serves. */
  public readonly readiness: pulumi.Output<Readiness>;
  /** The Swarm service's name; its tasks answer at `tasks.<name>` on the stack's network. */
  public readonly serviceName: pulumi.Output<string>;
  /** What the stack serves over TLS, observed through the proxy. */
  public readonly tls: pulumi.Output<TlsRecord>;

  constructor(name: string, args: SwarmServiceArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:SwarmService", name, {}, opts);
    const tls = args.tls;
    const atProxy = terminatedAtProxy(`SwarmService ${name}`, tls);
    const names = swarmNames(name);
    const profile = withResources(hardeningProfile, args.resources);
    const labels = { ...args.labels, "backend-delivery.component": name };
    const host = endpointInputs(args.docker);

    // Attachable: the front proxy and the probe are plain containers on the manager.
    const network = new docker.Network(`${name}-network`, { name: names.network, driver: "overlay", attachable: true }, { parent: this });
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
    const { PORT: port = String(args.containerPort), ...settings } = plainSettings({
      appEnv: args.appEnv,
      port: args.containerPort,
      env: args.env ?? {},
      ...(tls?.domain === undefined ? {} : { publicHost: tls.domain }),
    });
    const settingsText = settingsFileText(settings);
    // With the image's digest (IMAGE_DIGEST), known only once staging has built it, so not in the name:
    // a new image makes a new config all the same (`data` replaces it, create-before-delete).
    const settingsData = pulumi
      .output(args.imageDigest)
      .apply((digest) => Buffer.from(settingsFileText({ ...settings, IMAGE_DIGEST: digest }), "utf8").toString("base64"));
    const settingsConfig = new docker.ServiceConfig(
      `${name}-settings-${createHash("sha256").update(settingsText).digest("hex").slice(0, 12)}`,
      // Labelled like the secrets: `docker config ls --filter label=backend-delivery.component=<name>` lists the stack's.
      { data: settingsData, labels: [{ label: "backend-delivery.component", value: name }] },
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
        name: names.service,
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
      proxyContainerName(name),
      {
        image: args.proxyImage,
        hostPort: args.hostPort,
        network: network.name,
        labels: { ...args.labels, "backend-delivery.role": "proxy" },
        ...(atProxy === undefined ? {} : { tls: { domain: atProxy.domain, httpsPort: atProxy.httpsPort } }),
      },
      { parent: this },
    );
    const probe = { image: args.image, network: network.name, ...probeConfinement(), labels: { ...args.labels, "backend-delivery.role": "probe" } };
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
        probeImage: probe.image,
        user: probe.user,
        hostConfig: probe.hostConfig,
        labels: probe.labels,
        port: args.containerPort,
        path: args.readiness.path,
        imageDigest: args.imageDigest,
        readinessTimeoutSeconds: args.readiness.timeoutSeconds,
        intervalMs: args.readiness.intervalMs,
        successThreshold: args.readiness.successThreshold,
        hostHeader: PROBE_HOST,
        ...host,
      },
      { parent: this },
    );
    // After the rollout check, as the single-host route comes after the readiness check: the proxy is
    // (re)configured and looked through once every task of the release is proven.
    const proxyConfig = new SwarmProxyConfig(
      `${name}-proxy-config`,
      {
        proxyContainer: proxy.containerName,
        proxyContainerId: proxy.containerId,
        service: service.name,
        port: args.containerPort,
        hsts: args.appEnv !== "development",
        release,
        readyAt: rollout.readiness.apply((r) => r.checkedAt),
        probe: pulumi.output(probe),
        hostHeader: PROBE_HOST,
        ...(atProxy === undefined ? {} : { tls: routeTls(atProxy), proxyUser: proxyProfile.user, tlsTimeoutSeconds: args.readiness.timeoutSeconds }),
        ...host,
      },
      { parent: this },
    );

    if (args.retention !== undefined) {
      const { project, repository, keepImages, previous, planned } = args.retention;
      // After the rollout check and the look through the proxy only: an update that Swarm rolled
      // back, or that failed either check, removes nothing.
      new SwarmImages(
        `${name}-images`,
        { project, repository, keepImages, service: service.name, serving: args.serviceImage, ...(previous === undefined ? {} : { previous }), planned, labels: { ...args.labels }, ...host },
        { parent: this, dependsOn: [rollout, proxyConfig] },
      );
    }

    this.url = stackUrl(tls, proxy.url);
    // The record goes out only once the release answers through the proxy.
    this.readiness = pulumi.all([rollout.readiness, proxyConfig.configuredAt]).apply(([readiness]) => readiness);
    this.serviceName = service.name;
    this.tls = tlsOutput(tls, atProxy, proxyConfig.configuredAt, proxyConfig.servedCertificate);
    this.registerOutputs({ url: this.url, readiness: this.readiness, serviceName: this.serviceName, tls: this.tls });
  }
}
