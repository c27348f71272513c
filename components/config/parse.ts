/**
 * Validates the raw stack config, as the engine hands it over, in one pass: every problem at once,
 * each with the command that fixes it, and secret values never echoed. Pure: no Pulumi runtime.
 */
import type { z } from "zod";
import { DeliveryConfig } from "../delivery/config";
import type { DockerEndpoint } from "../docker/client";
import { fixCommand, issueProblems, type ConfigProblem } from "./fixes";
import { SWARM_ONLY_KEYS, makeStackConfigSchema, type StackConfig, type StackConfigSchema } from "./schema";
import { signingChecks } from "./signing";
import { isStoredEncrypted, type SecretSources } from "./secretStorage";
import { privilegedPortProblem, tlsProblems } from "./tls";

/** The GitHub provider's token, which `delivery` needs; the provider's own namespace. */
export const GITHUB_TOKEN_KEY = "github:token";

/** Input to {@link parseStackConfig}: the raw config exactly as the engine hands it over. */
export interface RawStackConfig {
  project: string;
  stack: string;
  /** Every config value, keyed `<namespace>:<key>`, values as strings (objects as JSON). */
  values: Record<string, string>;
  secretSources: SecretSources;
  /** The time certificates are checked against; now when unset. */
  now?: Date;
}

/** The parsed stack config with plain secret values; only the loader (load.ts) sees it. */
export type ParsedStackConfig = StackConfig & {
  /** Values of the top-level keys that `delivery.environmentSecrets` names, by key. */
  deliverySecrets: Record<string, string>;
  /** `github:token`, when `delivery` is set. */
  githubToken?: string;
  /** The Docker provider's own `docker:host` and `docker:sshOpts`, checked. */
  docker: DockerEndpoint;
};

export type ParseResult = { ok: true; config: ParsedStackConfig } | { ok: false; problems: ConfigProblem[] };

const PROMPT = "   (prompts for the value; or pipe it on stdin)";

/** Top-level keys whose value is text even when it starts like JSON (a password may start with `{`). */
const PLAIN_TEXT_KEYS = new Set(["environment", "registryPassword", "tlsPrivateKey", "cosignPrivateKey", "cosignPassword"]);

/** Top-level keys that hold a secret and must be stored encrypted. */
const SECRET_KEYS = ["registryPassword", "tlsPrivateKey", "cosignPrivateKey", "cosignPassword"] as const;

/** Validate the raw config; pure, no Pulumi runtime needed. */
export function parseStackConfig(raw: RawStackConfig): ParseResult {
  const { project, stack, values, secretSources } = raw;
  const schema = makeStackConfigSchema(project);
  const fix = (path: readonly PropertyKey[], action: "set" | "rm" = "set") => fixCommand(schema, stack, path, action);
  const encrypted = (segments: string[]) => isStoredEncrypted(project, segments, secretSources);
  const problems: ConfigProblem[] = [];
  const input: Record<string, unknown> = {};
  const prefix = `${project}:`;
  for (const [fullKey, text] of Object.entries(values)) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    let value: unknown = text;
    if (!PLAIN_TEXT_KEYS.has(key) && /^\s*[[{]/.test(text)) {
      try {
        value = JSON.parse(text);
      } catch {
        problems.push({ path: [key], message: "is not valid JSON", fix: fix([key]) });
        continue;
      }
    }
    input[key] = value;
  }

  // `delivery` names further top-level keys that hold secrets; they are known keys, stored encrypted.
  // Its own problems are the schema's to report, below.
  const deliverySecrets: Record<string, string> = {};
  let githubToken: string | undefined;
  const delivery = input.delivery === undefined ? undefined : DeliveryConfig.safeParse(input.delivery);
  if (delivery?.success === true) {
    for (const [secretName, key] of Object.entries(delivery.data.environmentSecrets)) {
      const value = input[key];
      delete input[key];
      const setIt = `pulumi config set --stack ${stack} --secret '${key}'${PROMPT}`;
      if (typeof value !== "string" || value === "") {
        problems.push({ path: [key], message: `is missing; delivery.environmentSecrets.${secretName} reads it`, fix: setIt });
      } else if (!encrypted([key])) {
        problems.push({ path: [key], message: "is stored in plain text; set it with --secret", fix: setIt });
      } else {
        deliverySecrets[key] = value;
      }
    }
    githubToken = values[GITHUB_TOKEN_KEY];
    const setToken = `pulumi config set --stack ${stack} --secret ${GITHUB_TOKEN_KEY}${PROMPT}`;
    if (githubToken === undefined || githubToken === "") {
      problems.push({ path: [GITHUB_TOKEN_KEY], message: "is missing; delivery needs a token with admin rights on the repository", fix: setToken });
    } else if (!isStoredEncrypted("github", ["token"], secretSources)) {
      problems.push({ path: [GITHUB_TOKEN_KEY], message: "is stored in plain text; set it with --secret", fix: setToken });
    }
  }

  // Plaintext secrets are refused whatever else is wrong, and before zod sees the values.
  const secrets = input.secrets;
  if (secrets !== null && typeof secrets === "object" && !Array.isArray(secrets)) {
    for (const name of Object.keys(secrets)) {
      if (!encrypted(["secrets", name])) {
        problems.push({ path: ["secrets", name], message: "is stored in plain text; secrets must be set with --secret", fix: fix(["secrets", name]) });
      }
    }
  }
  for (const key of SECRET_KEYS) {
    if (input[key] !== undefined && !encrypted([key])) {
      problems.push({ path: [key], message: "is stored in plain text; set it with --secret", fix: fix([key]) });
    }
  }
  const privileged = privilegedPortProblem(input, fix);
  if (privileged !== undefined) problems.push(privileged);

  const docker = parseDockerEndpoint(values, stack, problems);

  const result = schema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...issueProblems(schema, stack, issue));
    return { ok: false, problems };
  }
  problems.push(...crossChecks(schema, result.data, input, stack));
  problems.push(...tlsProblems(result.data, input, fix, stack, raw.now ?? new Date()));
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, config: { ...result.data, deliverySecrets, docker, ...(githubToken === undefined ? {} : { githubToken }) } };
}

/** The Docker provider's config keys that the program's own engine calls follow too. */
export const DOCKER_HOST_KEY = "docker:host";
export const DOCKER_SSH_OPTS_KEY = "docker:sshOpts";

/**
 * `docker:host` and `docker:sshOpts`, which the Docker provider reads itself: checked here so a typo
 * is refused with its fix before anything connects, and handed to the parts that call the engine
 * themselves.
 */
function parseDockerEndpoint(values: Record<string, string>, stack: string, problems: ConfigProblem[]): DockerEndpoint {
  const endpoint: DockerEndpoint = {};
  const host = values[DOCKER_HOST_KEY]?.trim();
  const setHost = `pulumi config set --stack ${stack} ${DOCKER_HOST_KEY} ssh://deploy@server.example.com   (or unix:///var/run/docker.sock, tcp://HOST:2375)`;
  if (host !== undefined && host !== "") {
    const scheme = /^([a-z]+):\/\/(.+)$/.exec(host);
    if (scheme === null || !["unix", "tcp", "ssh", "http", "https"].includes(scheme[1] as string)) {
      problems.push({ path: [DOCKER_HOST_KEY], message: "is not a Docker host: expected ssh://USER@HOST[:PORT], unix:///PATH or tcp://HOST:PORT", fix: setHost });
    } else if (scheme[1] === "ssh") {
      let url: URL | undefined;
      try {
        url = new URL(host);
      } catch {
        url = undefined;
      }
      if (url === undefined || url.hostname === "") {
        problems.push({ path: [DOCKER_HOST_KEY], message: "is not an ssh:// address: expected ssh://USER@HOST[:PORT]", fix: setHost });
      } else if (url.password !== "") {
        // The value is not echoed: it holds a password.
        problems.push({
          path: [DOCKER_HOST_KEY],
          message: "holds a password; SSH to a Docker host authenticates with a key (docker:sshOpts -i, or the SSH agent), and the password in stack config is plain text",
          fix: setHost,
        });
      } else if ((url.pathname !== "" && url.pathname !== "/") || url.search !== "") {
        problems.push({ path: [DOCKER_HOST_KEY], message: "has a path or query; an ssh:// Docker host is only ssh://USER@HOST[:PORT]", fix: setHost });
      } else {
        endpoint.host = host;
      }
    } else {
      endpoint.host = host;
    }
  }
  const rawOpts = values[DOCKER_SSH_OPTS_KEY];
  if (rawOpts !== undefined) {
    const setOpts = `pulumi config set --stack ${stack} --path '${DOCKER_SSH_OPTS_KEY}[0]' -- -i   (a list of ssh flags, e.g. ["-i", "~/.ssh/deploy", "-o", "UserKnownHostsFile=~/.ssh/known_hosts"])`;
    let opts: unknown;
    try {
      opts = JSON.parse(rawOpts);
    } catch {
      opts = undefined;
    }
    if (!Array.isArray(opts) || !opts.every((o) => typeof o === "string")) {
      problems.push({ path: [DOCKER_SSH_OPTS_KEY], message: "is not a list of ssh flags", fix: setOpts });
    } else if (opts.length > 0) {
      if (!endpoint.host?.startsWith("ssh://")) {
        problems.push({ path: [DOCKER_SSH_OPTS_KEY], message: "is set but docker:host is not an ssh:// host", fix: `pulumi config rm --stack ${stack} ${DOCKER_SSH_OPTS_KEY}` });
      }
      const weakening = (opts as string[]).find((o) => /^(-o\s*)?(StrictHostKeyChecking|UserKnownHostsFile)\s*=\s*(no|off|accept-new|\/dev\/null)$/i.test(o.trim()));
      if (weakening !== undefined) {
        problems.push({
          path: [DOCKER_SSH_OPTS_KEY],
          message: `turns host key checking off (${weakening}); the server's key must be pinned in known_hosts`,
          fix: `pin the key (ssh-keyscan, checked against the server) in a known_hosts file and use -o UserKnownHostsFile=<that file>`,
        });
      }
      endpoint.sshOpts = opts as string[];
    }
  }
  return endpoint;
}

/** Rules that span keys or depend on the stack's role. */
function crossChecks(schema: StackConfigSchema, config: z.output<StackConfigSchema>, input: Record<string, unknown>, stack: string): ConfigProblem[] {
  const fix = (path: readonly PropertyKey[], action: "set" | "rm" = "set") => fixCommand(schema, stack, path, action);
  const problems: ConfigProblem[] = [];
  const problem = (path: PropertyKey[], message: string, command: string) => problems.push({ path, message, fix: command });
  const rawImage = (input.image ?? {}) as Record<string, unknown>;
  if (config.image.registry && config.registryPassword === undefined) {
    problem(["registryPassword"], "is required when image.registry is set", fix(["registryPassword"]));
  }
  if (!config.image.registry && config.registryPassword !== undefined) {
    problem(["registryPassword"], "is set but image.registry is not; set image.registry or remove the password", fix(["registryPassword"], "rm"));
  }
  problems.push(...signingChecks(config, stack, fix));
  for (const name of Object.keys(config.service.env)) {
    if (name in config.secrets) problem(["service", "env", name], "is also set in secrets; keep it in one place", fix(["service", "env", name], "rm"));
  }
  // The Swarm target's keys mean nothing to release containers: refused by name rather than ignored.
  const rawService = (input.service ?? {}) as Record<string, unknown>;
  if (config.service.orchestrator !== "swarm") {
    for (const key of SWARM_ONLY_KEYS) {
      if (rawService[key] !== undefined) {
        problem(
          ["service", key],
          "only applies to service.orchestrator swarm (this stack runs release containers)",
          `${fix(["service", key], "rm")}\n         or ${fix(["service", "orchestrator"])}`,
        );
      }
    }
  }
  const sqlite = /^sqlite/.test(config.secrets.DATABASE_URL);
  if (config.service.orchestrator === "swarm" && sqlite) {
    // Each replica would have a database of its own, gone with the task: Swarm replicas share PostgreSQL.
    problem(["secrets", "DATABASE_URL"], "is SQLite, which replicas of a Swarm service cannot share; use a PostgreSQL URL", fix(["secrets", "DATABASE_URL"]));
  }
  if (config.environment === "prod") {
    if (sqlite && config.service.orchestrator !== "swarm") {
      problem(["secrets", "DATABASE_URL"], "is the local SQLite default, which prod refuses; use a PostgreSQL URL", fix(["secrets", "DATABASE_URL"]));
    }
    for (const key of ["context", "dockerfile", "baseImage", "platform"]) {
      if (rawImage[key] !== undefined) {
        problem(["image", key], "is a build setting, but prod never builds: it runs the digest staging proved ready", fix(["image", key], "rm"));
      }
    }
  } else {
    if (input.promotion !== undefined) problem(["promotion"], "only applies to prod stacks (environment is staging)", fix(["promotion"], "rm"));
    if (input.delivery !== undefined) {
      problem(["delivery"], "is managed by the prod stack only (it controls production's reviewers); set it there", fix(["delivery"], "rm"));
    }
  }
  return problems;
}
