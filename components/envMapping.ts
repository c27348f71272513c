/**
 * How stack config becomes the container's environment. No resources here: the mapping is pure
 * apart from building secret-aware strings with `pulumi.interpolate`.
 */
import { createHmac } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";

/** The backend's `APP_ENV` for a stack role (see backend settings). */
export function appEnvFor(environment: "staging" | "prod"): "staging" | "production" {
  return environment === "prod" ? "production" : "staging";
}

/** Inputs to {@link containerEnv}. */
export interface ContainerEnvArgs {
  /** The backend's `APP_ENV`. */
  appEnv: string;
  /** The port the backend listens on inside the container (`PORT`). */
  port: number;
  /** Plain settings. */
  env: Readonly<Record<string, string>>;
  /** Secret settings; each value stays a secret Output. */
  secrets: Readonly<Record<string, pulumi.Input<string>>>;
  /** The public host name clients send as `Host` (`proxy.domain`), which the backend must accept. */
  publicHost?: string;
  /**
   * The digest of the image the container runs (`IMAGE_DIGEST`), which the backend's metrics report:
   * an image cannot hold its own digest, so whoever runs it says which one it is.
   */
  imageDigest?: pulumi.Input<string>;
}

/**
 * `NAME=value` entries for `docker.Container.envs`, sorted by name so a reordering in config is not
 * a diff. Secret entries are built with `pulumi.interpolate`, so the whole list is secret in state.
 */
export function containerEnv(args: ContainerEnvArgs): pulumi.Output<string[]> {
  return pulumi.output(args.imageDigest).apply((imageDigest) => {
    const plain = plainSettings({ ...args, imageDigest });
    const names = [...new Set([...Object.keys(plain), ...Object.keys(args.secrets)])].sort();
    const entries = names.map((name) => {
      const secret = args.secrets[name];
      return secret === undefined ? pulumi.output(`${name}=${plain[name]}`) : pulumi.interpolate`${name}=${secret}`;
    });
    return pulumi.all(entries);
  });
}

/** Inputs to {@link plainSettings}: {@link ContainerEnvArgs} without the secrets, the digest resolved. */
export type PlainSettingsArgs = Omit<ContainerEnvArgs, "secrets" | "imageDigest"> & { imageDigest?: string };

/**
 * The plain settings as the backend reads them: config's own, `APP_ENV`, `PORT` and `IMAGE_DIGEST`
 * set by the program, `ALLOWED_HOSTS` with the stack's public name and the loopback host the probes name. A target that mounts the secrets
 * as files (Swarm) puts only these in the environment.
 */
export function plainSettings(args: PlainSettingsArgs): Record<string, string> {
  const plain: Record<string, string> = {
    ...args.env,
    APP_ENV: args.appEnv,
    PORT: String(args.port),
    ...(args.imageDigest === undefined ? {} : { IMAGE_DIGEST: args.imageDigest }),
  };
  if (args.publicHost !== undefined) plain.ALLOWED_HOSTS = withPublicHost(plain.ALLOWED_HOSTS, args.publicHost);
  if (plain.ALLOWED_HOSTS !== undefined) plain.ALLOWED_HOSTS = withLoopbackHost(plain.ALLOWED_HOSTS);
  return plain;
}

/**
 * `ALLOWED_HOSTS` with `127.0.0.1` added when missing. The port is published on the Docker host's
 * loopback interface only and the readiness check probes it by that address; without it a stack
 * that sets its public host names would have every probe refused with 400 by the trusted-host check.
 */
export function withLoopbackHost(allowedHosts: string): string {
  const hosts = allowedHosts
    .split(",")
    .map((host) => host.trim())
    .filter((host) => host !== "");
  return hosts.includes("127.0.0.1") || hosts.includes("*") ? hosts.join(",") : [...hosts, "127.0.0.1"].join(",");
}

/**
 * `ALLOWED_HOSTS` that accepts `host` too: the stack's public name, which every request through its
 * TLS front carries as `Host`; without it the trusted-host check would answer each with 400. Only the
 * name itself, and only when no entry (`*`, a `*.example.com` wildcard) covers it already.
 */
export function withPublicHost(allowedHosts: string | undefined, host: string): string {
  const hosts = (allowedHosts ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  const covered = hosts.some((entry) => entry === "*" || entry === host || (entry.startsWith("*.") && host.endsWith(entry.slice(1))));
  return covered ? hosts.join(",") : [...hosts, host].join(",");
}

/**
 * A short tag per secret setting that changes with its value and tells nothing about it: an HMAC of
 * the name and value keyed with the stack's `SECRET_KEY` (a plain hash would let whoever lists Swarm
 * secrets guess a weak value). What names a target's secret objects, so a new value is a new one.
 */
export function secretTags(secrets: Readonly<Record<string, string>>, key: string): Record<string, string> {
  return Object.fromEntries(Object.entries(secrets).map(([name, value]) => [name, createHmac("sha256", key).update(`${name}\0${value}`).digest("hex").slice(0, 12)]));
}
