/**
 * A new configuration for the running front proxy, the same on every target: with TLS at the proxy,
 * the certificate files (or ACME CA root) are written into the proxy's data volume through the
 * engine (never an environment variable, label or command line); the configuration is written into
 * its config volume and loaded with `caddy reload` inside the proxy's container (Caddy swaps it
 * whole; requests under way finish on the old one); then the target's own look through the proxy
 * verifies it ({@link awaitProxyAnswer}: over HTTPS, naming `proxy.domain`, when the proxy terminates
 * TLS; for a certificate of the user's, exactly its leaf; in `acme` mode it waits for the issuance and
 * fails as soon as Caddy logs why it could not get one). Only a verified configuration becomes the
 * one a restarted proxy resumes; an unverified one is replaced by the previous one again, so the
 * previous release and certificate keep serving, and the previous certificate's files (its key above
 * all) go once nothing reads them.
 *
 * The single-host route (route.ts) and the Swarm target's proxy configuration (swarm/proxyConfig.ts)
 * are dynamic providers that carry these functions into their own process (Pulumi serializes them):
 * plain functions only.
 */
import type Docker from "dockerode";
import { dockerClient, execIn, logsSince, putEntries, putFile, type ExecResult } from "../docker/client";
import { proxyProfile } from "../hardening";
import { execProber } from "../readiness/dockerView";
import { PROXY_ADMIN, PROXY_CONFIG_DIR, PROXY_DATA_DIR, PROXY_HTTPS_PORT, PROXY_LISTEN_PORT, PROXY_RESUME_FILE, PROXY_TLS_FILES, caddyConfig, type ProxySettings } from "./caddyConfig";
import { leafDer, obtainFailure, ownerOf, tlsFiles, tlsProber, type RouteTls } from "./tlsProbe";

/** What the providers that load the proxy name alike (route.ts's inputs, swarm/proxyConfig.ts's). */
export interface ProxyInputs {
  /** The proxy's container name (its host name on the stack's network) and id. */
  proxyContainer: string;
  proxyContainerId: string;
  /** Send `Strict-Transport-Security` from the proxy's own answers. */
  hsts: boolean;
  /** The `Host` the verification names: one the backend accepts. */
  hostHeader: string;
  /** TLS at the proxy (the key in clear: the provider's input is a secret); plain HTTP when unset. */
  tls?: RouteTls;
  /** The proxy's `uid:gid`, which must own what Caddy writes in its data volume (with `tls`). */
  proxyUser?: string;
  /** How long `acme` mode may take to get a certificate. */
  tlsTimeoutSeconds?: number;
  dockerHost?: string;
  dockerSshOpts?: string[];
}

/** What a proxy is given to serve. */
export interface ProxyLoad extends ProxyInputs {
  /** What it forwards to: the serving name's `<name>:<port>`, or every task of a service. */
  upstream: ProxySettings["upstream"];
  /** The TLS files the configuration that served until now reads; those this one does not are removed. */
  previousFiles?: string[] | undefined;
  /** What the configuration serves, for messages: `release <name>`, `the tasks of service <name>`. */
  what: string;
}

/** What a verified load leaves: the certificate the verification was served (with TLS), and the files the configuration reads. */
export interface ProxyLoaded {
  /** DER, base64. */
  served?: string;
  /** The files of {@link PROXY_TLS_FILES} the configuration reads. */
  tlsFiles?: string[];
}

/** `caddy reload` of `file` inside the proxy; a proxy container that has just started may not listen on its admin endpoint yet. */
async function reloadFrom(docker: Docker, proxyContainerId: string, file: string): Promise<ExecResult> {
  const reload = () => execIn(docker, proxyContainerId, ["caddy", "reload", "--config", file, "--address", PROXY_ADMIN, "--force"], 30_000);
  let loaded = await reload();
  for (let tries = 0; loaded.exitCode !== 0 && /connection refused/.test(loaded.stderr) && tries < 20; tries++) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    loaded = await reload();
  }
  return loaded;
}

/**
 * Loads `load` into the running proxy and keeps it only once `verify` (given the second the
 * configuration was loaded, for Caddy's log) has seen it serve; returns what `verify` returned.
 */
export async function reloadVerified(docker: Docker, load: ProxyLoad, verify: (loadedAt: number) => Promise<string | undefined>): Promise<ProxyLoaded> {
  const id = load.proxyContainerId;
  // The proxy's pids limit, its cgroup's, which the Docker provider's Container cannot set. Its nearest,
  // RLIMIT_NPROC, counts every process of the user on the whole host, the releases' too (the same uid):
  // under writes they used it up, and Caddy and `caddy reload` crashed for want of a thread.
  await docker.getContainer(id).update({ PidsLimit: proxyProfile.resources.pids });
  if (load.tls !== undefined && load.proxyUser === undefined) throw new Error("the proxy's user (proxyUser) is needed to write its TLS files");
  const files = load.tls === undefined ? undefined : await tlsFiles(load.tls, ownerOf(load.proxyUser ?? ""));
  if (files !== undefined) await putEntries(docker, id, PROXY_DATA_DIR, files.entries);
  const settings = { upstream: load.upstream, hsts: load.hsts, ...(files === undefined ? {} : { tls: files.proxy }) };
  const config = `${JSON.stringify(caddyConfig(settings), null, 2)}\n`;
  await putFile(docker, id, PROXY_CONFIG_DIR, "next.json", config);
  // A second early: the engine's log timestamps and this clock agree to about that.
  const loadedAt = Math.floor(Date.now() / 1000) - 1;
  const loaded = await reloadFrom(docker, id, `${PROXY_CONFIG_DIR}/next.json`);
  if (loaded.exitCode !== 0) {
    throw new Error(
      `the front proxy refused the configuration for ${load.what} (caddy reload exited ${loaded.exitCode}); ` +
        `the previous release keeps serving:\n${(loaded.stderr || loaded.stdout).trim().split("\n").slice(-5).join("\n")}`,
    );
  }
  let served: string | undefined;
  try {
    served = await verify(loadedAt);
  } catch (error) {
    // The configuration the proxy last resumed from is the last one verified: back to it.
    const back = await reloadFrom(docker, id, `${PROXY_CONFIG_DIR}/${PROXY_RESUME_FILE}`).catch(() => undefined);
    const outcome = back?.exitCode === 0 ? "the proxy is back on its previous configuration, so the previous release and certificate keep serving" : "the previous release is not deleted";
    throw new Error(`${(error as Error).message}; ${outcome}`, { cause: error });
  }
  // Only a verified configuration becomes the one a restarted proxy resumes.
  await putFile(docker, id, PROXY_CONFIG_DIR, PROXY_RESUME_FILE, config);
  const stale = (load.previousFiles ?? []).filter((name) => !(files?.names ?? []).includes(name));
  if (stale.length > 0) {
    await execIn(docker, id, ["rm", "-f", ...stale.map((name) => `${PROXY_DATA_DIR}/${PROXY_TLS_FILES}/${name}`)], 10_000).catch(() => undefined);
  }
  return { ...(served === undefined ? {} : { served }), ...(files === undefined ? {} : { tlsFiles: files.names }) };
}

/** How a target looks through its proxy. */
export interface ProxyLook extends ProxyInputs {
  /** A container on the proxy's network with the backend image's Python, which asks. */
  from: string;
  /** What should answer, for the message of a look that never saw it: `the release`, `a running task of the release`. */
  answerer: string;
  /** What the configuration serves, for that message. */
  what: string;
}

/** How long the look may take before the configuration counts as failed (`acme` waits up to its timeout). */
const VERIFY_SECONDS = 20;

/**
 * Asks `/version` through the proxy until `judge` takes the answer (it says why not, or undefined)
 * and, for a certificate of the user's, the proxy serves exactly its leaf; returns the certificate
 * served, with TLS.
 */
export async function awaitProxyAnswer(look: ProxyLook, loadedAt: number, judge: (status: number, body: string) => Promise<string | undefined>): Promise<string | undefined> {
  const { tls } = look;
  const url = tls === undefined ? `http://${look.proxyContainer}:${PROXY_LISTEN_PORT}/version` : `https://${look.proxyContainer}:${PROXY_HTTPS_PORT}/version (SNI ${tls.domain})`;
  const seconds = tls?.mode === "acme" ? Math.max(VERIFY_SECONDS, look.tlsTimeoutSeconds ?? 0) : VERIFY_SECONDS;
  const wanted = tls?.mode === "certificate" && tls.certificate !== undefined ? leafDer(tls.certificate) : undefined;
  const endpoint = { host: look.dockerHost, sshOpts: look.dockerSshOpts };
  const plain = execProber(look.from, endpoint, look.hostHeader);
  const secure = tlsProber(look.from, endpoint);
  const docker = dockerClient(look.dockerHost, look.dockerSshOpts);
  const deadline = Date.now() + seconds * 1000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    try {
      const answer =
        tls === undefined
          ? { ...(await plain.get(url, 5000)), certificate: undefined }
          : await secure.get(look.proxyContainer, PROXY_HTTPS_PORT, tls.domain, "/version", look.hostHeader, 5000);
      const refused = await judge(answer.status, answer.body);
      if (refused === undefined && (wanted === undefined || answer.certificate === wanted)) return answer.certificate;
      last = refused ?? "it serves another certificate than proxy.tls.certificate";
    } catch (error) {
      last = (error as Error).message;
    }
    if (tls?.mode === "acme") {
      // Caddy gets the certificate in the background; its log says at once when it cannot.
      const reason = obtainFailure(await logsSince(docker, look.proxyContainerId, loadedAt).catch(() => ""), tls.domain);
      if (reason !== undefined) throw new Error(`the front proxy could not get a certificate for ${tls.domain} from ${tls.acme?.directory ?? "its ACME CA"}: ${reason}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  const what = tls?.mode === "acme" ? `with a certificate for ${tls.domain} and ${look.answerer}` : `from ${look.answerer}`;
  throw new Error(`the front proxy took the configuration for ${look.what}, but ${url} did not answer ${what} within ${seconds} s (last: ${last})`);
}

/** The `release` (the answering container's host name) of a `/version` answer, or why there is none. */
export function answeringRelease(status: number, body: string): { release: string } | { refused: string } {
  let release: unknown;
  try {
    release = status === 200 ? (JSON.parse(body) as { release?: unknown }).release : undefined;
  } catch {
    release = undefined;
  }
  return typeof release === "string" ? { release } : { refused: `HTTP ${status}, release ${JSON.stringify(release)}` };
}
