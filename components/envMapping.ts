/**
 * How stack config becomes the container's environment. No resources here: the mapping is pure
 * apart from building secret-aware strings with `pulumi.interpolate`.
 */
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
}

/**
 * `NAME=value` entries for `docker.Container.envs`, sorted by name so a reordering in config is not
 * a diff. Secret entries are built with `pulumi.interpolate`, so the whole list is secret in state.
 */
export function containerEnv(args: ContainerEnvArgs): pulumi.Output<string[]> {
  const plain: Record<string, string> = { ...args.env, APP_ENV: args.appEnv, PORT: String(args.port) };
  const names = [...new Set([...Object.keys(plain), ...Object.keys(args.secrets)])].sort();
  const entries = names.map((name) => {
    const secret = args.secrets[name];
    return secret === undefined ? pulumi.output(`${name}=${plain[name]}`) : pulumi.interpolate`${name}=${secret}`;
  });
  return pulumi.all(entries);
}
