/**
 * `ProxyRoute`: switches the front proxy to the release that was just proven ready, atomically, and
 * verifies the switch through the proxy before the update goes on (and, at its end, deletes the old
 * release). A Pulumi dynamic resource: create and update switch; delete leaves the proxy as it is.
 *
 * The switch: with TLS at the proxy, the certificate files (or ACME CA root) are written into the
 * proxy's data volume through the engine (never an environment variable, label or command line);
 * the new configuration is written into its config volume, loaded with `caddy reload` inside the
 * proxy's container (Caddy swaps it whole; requests under way finish on the old one). The
 * verification: `/version` asked through the proxy (over HTTPS, naming `proxy.domain`, when the proxy
 * terminates TLS), from inside the new release, must name that release, and, for a certificate of
 * the user's, the proxy must serve that certificate; in `acme` mode it waits for the issuance and
 * fails as soon as Caddy logs why it could not get one. Only a verified configuration becomes the
 * one a restarted proxy resumes; an unverified one is replaced by the previous one again, so the
 * previous release and certificate keep serving.
 */
import * as pulumi from "@pulumi/pulumi";
import type Docker from "dockerode";
import { dockerClient, execIn, logsSince, putEntries, putFile } from "../docker/client";
import { proxyProfile } from "../hardening";
import { execProber } from "../readiness/dockerView";
import { PROXY_ADMIN, PROXY_CONFIG_DIR, PROXY_DATA_DIR, PROXY_HTTPS_PORT, PROXY_LISTEN_PORT, PROXY_RESUME_FILE, PROXY_TLS_FILES, caddyConfig } from "./caddyConfig";
import { leafDer, obtainFailure, ownerOf, tlsFiles, tlsProber, type RouteTls } from "./tlsProbe";

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
export interface ProxyRouteInputs {
  proxyContainer: string;
  proxyContainerId: string;
  releaseName: string;
  releaseId: string;
  releasePort: number;
  readyAt: string;
  hsts: boolean;
  hostHeader: string;
  tls?: RouteTls;
  proxyUser?: string;
  tlsTimeoutSeconds?: number;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What the provider records: its inputs, when the switch was verified, and what the proxy served then. */
export interface ProxyRouteOutputs extends ProxyRouteInputs {
  switchedAt: string;
  /** With TLS at the proxy: the certificate it served to the verification (DER, base64). */
  servedCertificate?: string;
  /** The files of {@link PROXY_TLS_FILES} this configuration reads. */
  tlsFiles?: string[];
}

/** How long the verification may take before the switch counts as failed (`acme` waits up to its timeout). */
const VERIFY_SECONDS = 20;

/** Asks `/version` through the proxy until it names the release (and serves the expected certificate); the certificate served, with TLS. */
async function verify(inputs: ProxyRouteInputs, loadedAt: number): Promise<string | undefined> {
  const endpoint = { host: inputs.dockerHost, sshOpts: inputs.dockerSshOpts };
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  const expected = inputs.releaseId.slice(0, 12);
  const { tls } = inputs;
  const url = tls === undefined ? `http://${inputs.proxyContainer}:${PROXY_LISTEN_PORT}/version` : `https://${inputs.proxyContainer}:${PROXY_HTTPS_PORT}/version (SNI ${tls.domain})`;
  const seconds = tls?.mode === "acme" ? Math.max(VERIFY_SECONDS, inputs.tlsTimeoutSeconds ?? 0) : VERIFY_SECONDS;
  const wanted = tls?.mode === "certificate" && tls.certificate !== undefined ? leafDer(tls.certificate) : undefined;
  const plain = execProber(inputs.releaseId, endpoint, inputs.hostHeader);
  const secure = tlsProber(inputs.releaseId, endpoint);
  const deadline = Date.now() + seconds * 1000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const answer =
        tls === undefined
          ? { ...(await plain.get(url, 5000)), certificate: undefined }
          : await secure.get(inputs.proxyContainer, PROXY_HTTPS_PORT, tls.domain, "/version", inputs.hostHeader, 5000);
      const release = answer.status === 200 ? (JSON.parse(answer.body) as { release?: unknown }).release : undefined;
      if (release === expected && (wanted === undefined || answer.certificate === wanted)) return answer.certificate;
      last = release === expected ? "it serves another certificate than proxy.tls.certificate" : `HTTP ${answer.status}, release ${JSON.stringify(release)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (tls?.mode === "acme") {
      // Caddy gets the certificate in the background; its log says at once when it cannot.
      const reason = obtainFailure(await logsSince(docker, inputs.proxyContainerId, loadedAt).catch(() => ""), tls.domain);
      if (reason !== undefined) throw new Error(`the front proxy could not get a certificate for ${tls.domain} from ${tls.acme?.directory ?? "its ACME CA"}: ${reason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const what = tls?.mode === "acme" ? `${url} did not answer with a certificate for ${tls.domain} and the release` : `${url} did not report it`;
  throw new Error(`the front proxy took the configuration for release ${inputs.releaseName}, but ${what} within ${seconds} s (last: ${last})`);
}

/**
 * Loads `config` (Caddy's JSON) into the running proxy `proxyContainerId` and keeps it as the one a
 * restarted proxy resumes; `what` names it in the error of a configuration the proxy refused. For a
 * target whose proxy's upstreams never change between releases (the Swarm target's dynamic ones).
 */
export async function loadProxyConfig(docker: Docker, proxyContainerId: string, config: Record<string, unknown>, what: string): Promise<void> {
  // The proxy's pids limit, its cgroup's, which the Docker provider's Container cannot set (see switchTo).
  await docker.getContainer(proxyContainerId).update({ PidsLimit: proxyProfile.resources.pids });
  const text = `${JSON.stringify(config, null, 2)}\n`;
  await putFile(docker, proxyContainerId, PROXY_CONFIG_DIR, "next.json", text);
  const reload = () => execIn(docker, proxyContainerId, ["caddy", "reload", "--config", `${PROXY_CONFIG_DIR}/next.json`, "--address", PROXY_ADMIN, "--force"], 30_000);
  let loaded = await reload();
  // A proxy container that has just started may not listen on its admin endpoint yet.
  for (let tries = 0; loaded.exitCode !== 0 && /connection refused/.test(loaded.stderr) && tries < 20; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    loaded = await reload();
  }
  if (loaded.exitCode !== 0) {
    throw new Error(
      `the front proxy refused the configuration for ${what} (caddy reload exited ${loaded.exitCode}); ` +
        `the previous release keeps serving:\n${(loaded.stderr || loaded.stdout).trim().split("\n").slice(-5).join("\n")}`,
    );
  }
  // Only a configuration the proxy took becomes the one it restarts with.
  await putFile(docker, proxyContainerId, PROXY_CONFIG_DIR, PROXY_RESUME_FILE, text);
}

/** Loads the configuration for `release` into the proxy and proves that traffic reaches it. */
async function switchTo(inputs: ProxyRouteInputs, olds?: ProxyRouteOutputs): Promise<ProxyRouteOutputs> {
  const docker = dockerClient(inputs.dockerHost, inputs.dockerSshOpts);
  // The proxy's pids limit, its cgroup's, which the Docker provider's Container cannot set. Its nearest,
  // RLIMIT_NPROC, counts every process of the user on the whole host, the releases' too (the same uid):
  // under writes they used it up, and Caddy and `caddy reload` crashed for want of a thread.
  await docker.getContainer(inputs.proxyContainerId).update({ PidsLimit: proxyProfile.resources.pids });
  if (inputs.tls !== undefined && inputs.proxyUser === undefined) throw new Error("the route needs the proxy's user (proxyUser) to write its TLS files");
  const files = inputs.tls === undefined ? undefined : await tlsFiles(inputs.tls, ownerOf(inputs.proxyUser ?? ""));
  if (files !== undefined) await putEntries(docker, inputs.proxyContainerId, PROXY_DATA_DIR, files.entries);
  const settings = { upstream: `${inputs.releaseName}:${inputs.releasePort}`, hsts: inputs.hsts, ...(files === undefined ? {} : { tls: files.proxy }) };
  const config = `${JSON.stringify(caddyConfig(settings), null, 2)}\n`;
  await putFile(docker, inputs.proxyContainerId, PROXY_CONFIG_DIR, "next.json", config);
  // A second early: the engine's log timestamps and this clock agree to about that.
  const loadedAt = Math.floor(Date.now() / 1000) - 1;
  const reload = (file: string) => execIn(docker, inputs.proxyContainerId, ["caddy", "reload", "--config", file, "--address", PROXY_ADMIN, "--force"], 30_000);
  let loaded = await reload(`${PROXY_CONFIG_DIR}/next.json`);
  // A proxy container that has just started may not listen on its admin endpoint yet.
  for (let tries = 0; loaded.exitCode !== 0 && /connection refused/.test(loaded.stderr) && tries < 20; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    loaded = await reload(`${PROXY_CONFIG_DIR}/next.json`);
  }
  if (loaded.exitCode !== 0) {
    throw new Error(
      `the front proxy refused the configuration for release ${inputs.releaseName} (caddy reload exited ${loaded.exitCode}); ` +
        `the previous release keeps serving:\n${(loaded.stderr || loaded.stdout).trim().split("\n").slice(-5).join("\n")}`,
    );
  }
  let served: string | undefined;
  try {
    served = await verify(inputs, loadedAt);
  } catch (error) {
    // The configuration the proxy last resumed from is the last one verified: back to it.
    const back = await reload(`${PROXY_CONFIG_DIR}/${PROXY_RESUME_FILE}`).catch(() => undefined);
    const outcome = back?.exitCode === 0 ? "the proxy is back on its previous configuration, so the previous release and certificate keep serving" : "the previous release is not deleted";
    throw new Error(`${(error as Error).message}; ${outcome}`, { cause: error });
  }
  // Only a verified configuration becomes the one a restarted proxy resumes.
  await putFile(docker, inputs.proxyContainerId, PROXY_CONFIG_DIR, PROXY_RESUME_FILE, config);
  // The previous certificate's files (its key above all) go once nothing reads them.
  const stale = (olds?.tlsFiles ?? []).filter((name) => !(files?.names ?? []).includes(name));
  if (stale.length > 0) {
    await execIn(docker, inputs.proxyContainerId, ["rm", "-f", ...stale.map((name) => `${PROXY_DATA_DIR}/${PROXY_TLS_FILES}/${name}`)], 10_000).catch(() => undefined);
  }
  return {
    ...inputs,
    switchedAt: new Date().toISOString(),
    ...(served === undefined ? {} : { servedCertificate: served }),
    ...(files === undefined ? {} : { tlsFiles: files.names }),
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
