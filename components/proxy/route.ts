/**
 * `ProxyRoute`: switches the front proxy to the release that was just proven ready, atomically, and
 * verifies the switch through the proxy before the update goes on (and, at its end, deletes the old
 * release). A Pulumi dynamic resource: create and update switch; delete leaves the proxy as it is.
 *
 * The switch is reload.ts's, as for every target: the TLS files into the proxy's data volume, the
 * configuration loaded with `caddy reload`, kept only once verified, else the previous one back. The
 * verification: `/version` asked through the proxy (over HTTPS, naming `proxy.domain`, when the proxy
 * terminates TLS), from inside the new release, must name that release, and, for a certificate of
 * the user's, the proxy must serve that certificate; in `acme` mode it waits for the issuance and
 * fails as soon as Caddy logs why it could not get one.
 */
import * as pulumi from "@pulumi/pulumi";
import { dockerClient } from "../docker/client";
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
  readyAt: string;
}

/** What the provider records: its inputs, when the switch was verified, and what the proxy served then. */
export interface ProxyRouteOutputs extends ProxyRouteInputs {
  switchedAt: string;
  /** With TLS at the proxy: the certificate it served to the verification (DER, base64). */
  servedCertificate?: string;
  /** The files of the proxy's TLS folder (caddyConfig.ts `PROXY_TLS_FILES`) this configuration reads. */
  tlsFiles?: string[];
}

/** Loads the configuration for the release into the proxy and proves through it, from inside the release, that traffic reaches it. */
async function switchTo(inputs: ProxyRouteInputs, olds?: ProxyRouteOutputs): Promise<ProxyRouteOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const what = `release ${inputs.releaseName}`;
  const expected = inputs.releaseId.slice(0, 12);
  // `/version` names the container that answered: the release, and no other.
  const judge = async (status: number, body: string) => {
    const answer = answeringRelease(status, body);
    return "refused" in answer ? answer.refused : answer.release === expected ? undefined : `HTTP ${status}, release ${JSON.stringify(answer.release)}`;
  };
  const look = { ...inputs, from: inputs.releaseId, answerer: "the release", what };
  const upstream = `${inputs.releaseName}:${inputs.releasePort}`;
  const loaded = await reloadVerified(docker, { ...inputs, upstream, previousFiles: olds?.tlsFiles, what }, (loadedAt) => awaitProxyAnswer(look, loadedAt, judge));
  return {
    ...inputs,
    switchedAt: new Date().toISOString(),
    ...(loaded.served === undefined ? {} : { servedCertificate: loaded.served }),
    ...(loaded.tlsFiles === undefined ? {} : { tlsFiles: loaded.tlsFiles }),
  };
}

/** The dynamic provider: create and update switch; delete leaves the proxy serving what it serves. */
export const routeProvider: pulumi.dynamic.ResourceProvider<ProxyRouteInputs, ProxyRouteOutputs> = {
  async diff(_id, olds, news) {
    const keys = ["proxyContainer", "proxyContainerId", "releaseName", "releaseId", "releasePort", "readyAt", "hsts", "hostHeader", "dockerHost"] as const;
    // Canonical JSON (keys sorted): state need not keep the order the program wrote them in.
    const canonical = (value: unknown): string =>
      value !== null && typeof value === "object"
        ? `{${Object.keys(value)
            .sort()
            .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
            .join(",")}}`
        : JSON.stringify(value ?? null);
    const changed = keys.some((key) => olds[key] !== news[key]) || canonical(olds.tls) !== canonical(news.tls);
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
    super(routeProvider, name, { ...args, switchedAt: undefined, servedCertificate: undefined }, { ...opts, additionalSecretOutputs: ["tls"] });
  }
}
