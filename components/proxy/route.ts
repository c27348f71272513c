/**
 * `ProxyRoute`: switches the front proxy to the release that was just proven ready, stops the
 * release that served before, and verifies through the proxy that the new one answers. A Pulumi
 * dynamic resource: create and update switch; delete leaves the proxy as it is.
 *
 * The switch moves a name, not the proxy's configuration. The proxy forwards to
 * `<servingAlias>:<port>` on the stack's network, and resolves that name for every connection it
 * opens. A release starts on a network of its own (the release provider's `network`), where it is
 * proven ready, so the name does not reach it until the switch joins it to the stack's network
 * under that alias. The proxy goes on using its open connections to the release that served; that
 * one is then stopped: SIGTERM, its listener closes (a connection refused there is dialed to the
 * name's next address, the new release), it answers what it is sent on its open connections, each
 * answer closing its connection (the backend's shutdown, app/http_protocol.py), and it exits once
 * the proxy has closed the idle ones. Caddy itself is not touched, so none of its client
 * connections is closed: a reload, which Caddy 2.6 does by closing every idle client connection,
 * would reset a request sent on one at that instant.
 *
 * The configuration is loaded (reload.ts's, as for every target: TLS files into the proxy's data
 * volume, `caddy reload`, kept only once verified, else the previous one back) only when what it
 * says changes: a new proxy container, HSTS, TLS, or the upstream. The verification, after the old
 * release has stopped: `/version` asked through the proxy (over HTTPS, naming `proxy.domain`, when
 * the proxy terminates TLS), from inside the new release, must name that release, and, for a
 * certificate of the user's, the proxy must serve that certificate; in `acme` mode it waits for the
 * issuance and fails as soon as Caddy logs why it could not get one. When it fails, the old release
 * is started again and serves.
 */
import type Docker from "dockerode";
import * as pulumi from "@pulumi/pulumi";
import { canonicalJson } from "../canonicalJson";
import { dockerClient } from "../docker/client";
import { stopRelease } from "../release/provider";
import { answeringRelease, awaitProxyAnswer, reloadVerified, type ProxyInputs } from "./reload";
import type { RouteTls } from "./tlsProbe";

/** Inputs of a {@link ProxyRoute}. */
export interface ProxyRouteArgs {
  /** The proxy's container name: its host name on the stack's network. */
  proxyContainer: pulumi.Input<string>;
  /** The proxy's container id: a new proxy container starts unrouted, so it is switched too. */
  proxyContainerId: pulumi.Input<string>;
  /** The release to switch to: its container name on the stack network, and its full id. */
  releaseName: pulumi.Input<string>;
  releaseId: pulumi.Input<string>;
  /** The port the release listens on. */
  releasePort: pulumi.Input<number>;
  /** The stack's network, which the proxy is on; the switch joins the release to it. */
  network: pulumi.Input<string>;
  /** The name the proxy forwards to on that network: the switch gives it to the release. */
  servingAlias: pulumi.Input<string>;
  /** When the release was proven ready; the route waits for it, and a new proof means a new switch. */
  readyAt: pulumi.Input<string>;
  /** Send `Strict-Transport-Security` from the proxy's own answers. */
  hsts: pulumi.Input<boolean>;
  /** The `Host` the verification names: one the backend accepts. */
  hostHeader: pulumi.Input<string>;
  /** TLS at the proxy (secret: it holds `certificate` mode's key); plain HTTP when unset. */
  tls?: pulumi.Input<RouteTls>;
  /** The proxy's `uid:gid`, which must own what Caddy writes in its data volume (with `tls`). */
  proxyUser?: pulumi.Input<string>;
  /** How long `acme` mode may take to get a certificate; how to wait, so no reason to switch again. */
  tlsTimeoutSeconds?: pulumi.Input<number>;
  /** Docker host of the engine (`docker:host`); the local one when unset. */
  dockerHost?: pulumi.Input<string>;
  /** `docker:sshOpts` for an `ssh://` host; how to connect, so no reason to switch again. */
  dockerSshOpts?: pulumi.Input<string[]>;
}

/** The inputs as the provider sees them: resolved. */
export interface ProxyRouteInputs extends ProxyInputs {
  releaseName: string;
  releaseId: string;
  releasePort: number;
  network: string;
  servingAlias: string;
  readyAt: string;
}

/** What the provider records: its inputs, when the switch was verified, and what the proxy served then. */
export interface ProxyRouteOutputs extends ProxyRouteInputs {
  switchedAt: string;
  /** What the configuration the proxy was last given forwards to (`<servingAlias>:<port>`). */
  upstream?: string;
  /** With TLS at the proxy: the certificate it served to the verification (DER, base64). */
  servedCertificate?: string;
  /** The files of the proxy's TLS folder (caddyConfig.ts `PROXY_TLS_FILES`) this configuration reads. */
  tlsFiles?: string[];
}

/**
 * Joins the release to the stack's network under the serving alias, once: a release that already
 * answers to it (an update that switches again, say for a new certificate) is left as it is.
 */
async function joinServing(docker: Docker, inputs: ProxyRouteInputs): Promise<void> {
  const inspected = (await docker.getContainer(inputs.releaseId).inspect()) as { NetworkSettings?: { Networks?: Record<string, { Aliases?: string[] | null }> } };
  const joined = inspected.NetworkSettings?.Networks?.[inputs.network];
  if (joined === undefined) {
    await docker.getNetwork(inputs.network).connect({ Container: inputs.releaseId, EndpointConfig: { Aliases: [inputs.servingAlias] } });
    return;
  }
  if (!(joined.Aliases ?? []).includes(inputs.servingAlias)) {
    // Docker sets an endpoint's aliases only when it joins; this release joined without the name.
    throw new Error(
      `release ${inputs.releaseName} is on ${inputs.network} without the name ${inputs.servingAlias}, so the proxy cannot reach it; ` +
        "it was made by an earlier version of this program: run `pulumi up --replace` with its URN (`pulumi stack --show-urns`) to start a release that can be switched to",
    );
  }
}

/**
 * Switches the proxy to the release: the name, and the configuration only when it changed; stops
 * the previous release; proves through the proxy, from inside the release, that traffic reaches it.
 */
async function switchTo(inputs: ProxyRouteInputs, olds?: ProxyRouteOutputs): Promise<ProxyRouteOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const what = `release ${inputs.releaseName}`;
  const expected = inputs.releaseId.slice(0, 12);
  const look = { ...inputs, from: inputs.releaseId, answerer: "the release", what };
  // `/version` names the container that answered. Until the release that served stops, the proxy's
  // open connections reach it, so the first look takes any release; the last one only the new.
  const judge = (only?: string) => async (status: number, body: string) => {
    const answer = answeringRelease(status, body);
    if ("refused" in answer) return answer.refused;
    return only === undefined || answer.release === only ? undefined : `HTTP ${status}, release ${JSON.stringify(answer.release)}`;
  };
  const upstream = `${inputs.servingAlias}:${inputs.releasePort}`;
  await joinServing(docker, inputs);
  const reload =
    olds === undefined ||
    olds.upstream !== upstream ||
    olds.proxyContainerId !== inputs.proxyContainerId ||
    olds.hsts !== inputs.hsts ||
    canonicalJson(olds.tls ?? null) !== canonicalJson(inputs.tls ?? null);
  const now = () => Math.floor(Date.now() / 1000) - 1;
  // The first look is made from the new release's own address on the proxy's network, so the proxy
  // learns that address from it (ARP) before it dials it; with a new configuration, it is the one
  // whose failure puts the proxy back on the previous configuration.
  const tlsFiles = reload
    ? (await reloadVerified(docker, { ...inputs, upstream, previousFiles: olds?.tlsFiles, what }, (loadedAt) => awaitProxyAnswer(look, loadedAt, judge()))).tlsFiles
    : (await awaitProxyAnswer(look, now(), judge()), olds.tlsFiles);
  const previous = olds !== undefined && olds.releaseId !== inputs.releaseId ? olds : undefined;
  if (previous !== undefined) await stopRelease(docker, previous.releaseId);
  let served: string | undefined;
  try {
    served = await awaitProxyAnswer(look, now(), judge(expected));
  } catch (error) {
    if (previous === undefined) throw error;
    // The name reaches no release that answers: the one that served until now serves again.
    const back = await docker
      .getContainer(previous.releaseId)
      .start()
      .then(() => true)
      .catch(() => false);
    throw new Error(`${(error as Error).message}; release ${previous.releaseName} ${back ? "was started again and serves" : "could not be started again"}`, { cause: error });
  }
  return {
    ...inputs,
    upstream,
    switchedAt: new Date().toISOString(),
    ...(served === undefined ? {} : { servedCertificate: served }),
    ...(tlsFiles === undefined ? {} : { tlsFiles }),
  };
}

/** The dynamic provider: create and update switch; delete leaves the proxy serving what it serves. */
export const routeProvider: pulumi.dynamic.ResourceProvider<ProxyRouteInputs, ProxyRouteOutputs> = {
  async diff(_id, olds, news) {
    const keys = ["proxyContainer", "proxyContainerId", "releaseName", "releaseId", "releasePort", "network", "servingAlias", "readyAt", "hsts", "hostHeader", "dockerHost"] as const;
    // Canonical JSON (keys sorted): state need not keep the order the program wrote them in.
    const changed = keys.some((key) => olds[key] !== news[key]) || canonicalJson(olds.tls ?? null) !== canonicalJson(news.tls ?? null);
    return { changes: changed, replaces: [] };
  },
  async create(inputs) {
    return { id: `${inputs.proxyContainer}-route`, outs: await switchTo(inputs) };
  },
  async update(_id, olds, news) {
    return { outs: await switchTo(news, olds) };
  },
};

/**
 * Points the front proxy at a release proven ready, and proves through the proxy that it did.
 * Depends on the release's readiness (through `readyAt`), so it never switches to an unproven one.
 */
export class ProxyRoute extends pulumi.dynamic.Resource {
  // `declare`, not a class field: a field would be re-initialised after `super()` (see readiness/check.ts).
  /** When the switch was verified through the proxy. */
  declare public readonly switchedAt: pulumi.Output<string>;
  /** With TLS at the proxy: the certificate it served when the switch was verified (DER, base64). */
  declare public readonly servedCertificate: pulumi.Output<string | undefined>;

  constructor(name: string, args: ProxyRouteArgs, opts: pulumi.CustomResourceOptions = {}) {
    // The recorded inputs hold `certificate` mode's private key: encrypted in state.
    super(routeProvider, name, { ...args, switchedAt: undefined, servedCertificate: undefined, upstream: undefined }, { ...opts, additionalSecretOutputs: ["tls"] });
  }
}
