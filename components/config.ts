/**
 * Stack configuration: one zod schema for the project's namespace, parsed once before any resource
 * is registered. Every problem is reported at once, each with the `pulumi config` command that fixes
 * it; secret values are never echoed. Defaults live in this schema and nowhere else.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { REQUIRED_SECRETS } from "./contract";
import { DeliveryConfig } from "./deliveryConfig";
import { hardeningProfile } from "./hardening";

/** Environment variables the program sets itself; config may not override them. */
export const PROGRAM_MANAGED_ENV = ["APP_ENV", "PORT"] as const;

/** A variable name that looks like it holds a credential and so belongs in `secrets`. */
export function looksSecret(name: string): boolean {
  return /PASSWORD|SECRET|TOKEN|KEY/i.test(name) || name.toUpperCase() === "DATABASE_URL";
}

// `pulumi config set --path a.b 8080` may store the number as a string; accept both spellings.
const fromNumericString = (value: unknown): unknown =>
  typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
const int = (min: number, max: number) =>
  z.preprocess(fromNumericString, z.int().min(min).max(max));
const num = (min: number, max: number) =>
  z.preprocess(fromNumericString, z.number().min(min).max(max));

const EnvName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected an environment variable name (letters, digits, _)");

const DATABASE_URL_SCHEMES = /^(postgresql|postgres|postgresql\+psycopg|sqlite)(\+[a-z0-9]+)?:\/\//;

// Messages here must not contain the value: they end up in CI logs.
const SecretValue = z.string({ error: "expected a string" }).min(1, "must not be empty");

const Secrets = z
  .object({
    DATABASE_URL: SecretValue.regex(
      DATABASE_URL_SCHEMES,
      "expected a postgresql:// (or sqlite:// for a local stack) URL",
    ),
    SECRET_KEY: SecretValue.min(32, "must be at least 32 characters"),
  })
  .catchall(SecretValue)
  .superRefine((secrets, ctx) => {
    for (const name of Object.keys(secrets)) {
      if (!EnvName.safeParse(name).success) {
        ctx.addIssue({ code: "custom", path: [name], message: "not a valid environment variable name", params: { fix: "rm" } });
      } else if ((PROGRAM_MANAGED_ENV as readonly string[]).includes(name)) {
        ctx.addIssue({ code: "custom", path: [name], message: "is set by the program; remove it", params: { fix: "rm" } });
      }
    }
  });

// `pulumi config set --path service.env.WEB_CONCURRENCY 2` stores the number 2, and `true` the
// boolean: the container gets their text either way.
const EnvValue = z
  .union([z.string(), z.number(), z.boolean()], { error: "expected a string, number or boolean" })
  .transform(String);

const Env = z.record(z.string(), EnvValue).superRefine((env, ctx) => {
  for (const name of Object.keys(env)) {
    if (!EnvName.safeParse(name).success) {
      ctx.addIssue({ code: "custom", path: [name], message: "not a valid environment variable name", params: { fix: "rm" } });
    } else if ((PROGRAM_MANAGED_ENV as readonly string[]).includes(name)) {
      ctx.addIssue({
        code: "custom",
        path: [name],
        message: `is set by the program (${name === "PORT" ? "from service.containerPort" : "from environment"}); remove it`,
        params: { fix: "rm" },
      });
    } else if (looksSecret(name)) {
      ctx.addIssue({
        code: "custom",
        path: [name],
        message: "looks like a secret; plain env is stored in clear text, move it to secrets",
        params: { fix: "move-to-secrets" },
      });
    }
  }
});

/** Build the stack config schema; `project` decides the default promotion source. */
export function makeStackConfigSchema(project: string) {
  return z.strictObject({
    /** Decides the stack's role; stack names are free. */
    environment: z.enum(["staging", "prod"], { error: "expected staging or prod" }),
    image: z
      .strictObject({
        /** Build context, relative to the project directory. */
        context: z.string().min(1).default("./backend"),
        /** Dockerfile, relative to the build context. */
        dockerfile: z.string().min(1).default("Dockerfile"),
        /** Base image passed as the `PYTHON_BASE` build argument; the Dockerfile's default when unset. */
        baseImage: z.string().min(1).optional(),
        /** Repository name of the image (without registry server). */
        name: z
          .string()
          .regex(/^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?$/, "expected a lowercase image name such as backend-delivery or team/backend:1")
          .default("backend-delivery"),
        platform: z
          .string()
          .regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, "expected os/arch such as linux/amd64")
          .optional(),
        /** Push to this registry and reference the image by repo digest; local-only when unset. */
        registry: z.strictObject({ server: z.string().min(1), username: z.string().min(1) }).optional(),
      })
      .prefault({}),
    /** Registry password; only with image.registry. */
    registryPassword: SecretValue.optional(),
    service: z.strictObject({
      hostPort: int(1024, 65535),
      containerPort: int(1, 65535).default(8000),
      env: Env.default({}),
      resources: z
        .strictObject({
          memoryMb: int(64, 1_048_576).default(hardeningProfile.resources.memoryMb),
          cpus: num(0.01, 256).default(hardeningProfile.resources.cpus),
          pids: int(16, 1_000_000).default(hardeningProfile.resources.pids),
        })
        .prefault({}),
    }),
    secrets: Secrets,
    readiness: z
      .strictObject({
        path: z.string().startsWith("/", "expected a path starting with /").default("/readyz"),
        timeoutSeconds: int(1, 3600).default(120),
        intervalMs: int(50, 60_000).default(1000),
        successThreshold: int(1, 100).default(2),
        /** Base URL to probe instead of http://127.0.0.1:<hostPort>. */
        url: z.url({ protocol: /^https?$/, error: "expected an http(s) URL" }).optional(),
      })
      .prefault({})
      .refine((r) => r.intervalMs < r.timeoutSeconds * 1000, {
        path: ["intervalMs"],
        message: "must be shorter than readiness.timeoutSeconds",
      }),
    promotion: z
      .strictObject({
        fromStack: z
          .string()
          .regex(/^[^\s/]+(\/[^\s/]+\/[^\s/]+)?$/, "expected <organization>/<project>/<stack> or a stack name")
          .default(`organization/${project}/staging`),
        maxAgeHours: num(0.01, 24 * 90).default(24),
        override: z
          .strictObject({
            reason: z.string().trim().min(1, "must not be empty"),
            approvedBy: z.string().trim().min(1, "must not be empty"),
          })
          .optional(),
      })
      .prefault({}),
    /** GitHub delivery (environments, secrets, branch protection); validated by its own schema. */
    delivery: z.unknown().optional(),
  });
}

/** The parsed stack config with plain secret values; only {@link loadConfig} sees it. */
export type ParsedStackConfig = Omit<z.output<ReturnType<typeof makeStackConfigSchema>>, "delivery"> & {
  delivery?: DeliveryConfig;
  /** Values of the top-level secret keys that `delivery.environmentSecrets` names. */
  deliverySecrets: Record<string, string>;
};

/** The top-level keys of the project namespace. */
export const CONFIG_KEYS = Object.keys(makeStackConfigSchema("p").shape);

/** Keys whose leaves must be stored encrypted. */
const SECRET_TOP_KEYS = ["secrets", "registryPassword"];

/** Example values shown in fix commands; secrets get none so the shell history stays clean. */
const EXAMPLES: Record<string, string> = {
  environment: "staging",
  "image.context": "./backend",
  "image.dockerfile": "Dockerfile",
  "image.baseImage": "python:3.12-slim-bookworm",
  "image.name": "backend-delivery",
  "image.platform": "linux/amd64",
  "image.registry.server": "ghcr.io",
  "image.registry.username": "<user>",
  "service.hostPort": "8080",
  "service.containerPort": "8000",
  "service.resources.memoryMb": "512",
  "service.resources.cpus": "1",
  "service.resources.pids": "256",
  "readiness.path": "/readyz",
  "readiness.timeoutSeconds": "120",
  "readiness.intervalMs": "1000",
  "readiness.successThreshold": "2",
  "readiness.url": "http://127.0.0.1:8080",
  "promotion.fromStack": "organization/backend-delivery/staging",
  "promotion.maxAgeHours": "24",
  "promotion.override.reason": "'<why>'",
  "promotion.override.approvedBy": "'<who>'",
};

/** One problem with the stack config. */
export interface ConfigProblem {
  path: PropertyKey[];
  message: string;
  /** The command that fixes it. */
  fix: string;
}

function quotePath(segments: PropertyKey[]): string {
  return segments.map(String).join(".");
}

/** The `pulumi config` command that sets (or removes) the value at `segments`. */
export function fixCommand(stack: string, segments: PropertyKey[], action: "set" | "rm" = "set"): string {
  const key = quotePath(segments);
  const top = String(segments[0] ?? "");
  const pathFlag = segments.length > 1 ? " --path" : "";
  const base = `pulumi config ${action} --stack ${stack}${pathFlag} '${key}'`;
  if (action === "rm") return base;
  // A whole required object is missing: name the leaves that must be set.
  if (segments.length === 1 && top === "secrets") {
    return REQUIRED_SECRETS.map((name) => fixCommand(stack, ["secrets", name])).join("\n         ");
  }
  if (segments.length === 1 && top === "service") return fixCommand(stack, ["service", "hostPort"]);
  if (SECRET_TOP_KEYS.includes(top)) {
    return `pulumi config set --stack ${stack} --secret${pathFlag} '${key}'   (prompts for the value; or pipe it on stdin)`;
  }
  return `${base} ${EXAMPLES[key] ?? "<value>"}`;
}

/** What the stack settings file and the SDK say about which values are stored encrypted. */
export interface SecretSources {
  /** Parsed `Pulumi.<stack>.yaml`, or undefined when there is none. */
  stackFile?: unknown;
  /** Whether the SDK reports this full key (`<project>:<key>`) as secret. */
  isSdkSecret: (fullKey: string) => boolean;
}

function isSecureLeaf(node: unknown): boolean {
  return typeof node === "object" && node !== null && !Array.isArray(node) && "secure" in node;
}

/**
 * Whether the value at `segments` is stored encrypted. The stack file is authoritative where it
 * records the leaf, because the SDK marks a whole object secret as soon as any one leaf is, so it
 * alone would let a plaintext sibling through; the SDK covers config that has no stack file.
 */
export function isStoredEncrypted(project: string, segments: string[], sources: SecretSources): boolean {
  const fileConfig = (sources.stackFile as { config?: Record<string, unknown> } | undefined)?.config;
  let node: unknown = fileConfig?.[`${project}:${segments[0]}`];
  if (node !== undefined) {
    for (const segment of segments.slice(1)) {
      if (isSecureLeaf(node)) return true;
      if (typeof node !== "object" || node === null) return false;
      node = (node as Record<string, unknown>)[segment];
      if (node === undefined) break;
    }
    if (node !== undefined) return isSecureLeaf(node);
  }
  return sources.isSdkSecret(`${project}:${segments[0]}`);
}

/** Input to {@link parseStackConfig}: the raw config exactly as the engine hands it over. */
export interface RawStackConfig {
  project: string;
  stack: string;
  /** Every config value, keyed `<namespace>:<key>`, values as strings (objects as JSON). */
  values: Record<string, string>;
  secretSources: SecretSources;
}

export type ParseResult =
  | { ok: true; config: ParsedStackConfig }
  | { ok: false; problems: ConfigProblem[] };

function issueFix(stack: string, issue: z.core.$ZodIssue): ConfigProblem[] {
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((key) => ({
      path: [...issue.path, key],
      message: `unknown key "${key}"${issue.path.length === 0 ? "" : ` in ${quotePath(issue.path)}`} (a typo?); known keys are listed in the README`,
      fix: fixCommand(stack, [...issue.path, key], "rm"),
    }));
  }
  const kind = issue.code === "custom" ? (issue.params as { fix?: string } | undefined)?.fix : undefined;
  if (kind === "rm") return [{ path: issue.path, message: issue.message, fix: fixCommand(stack, issue.path, "rm") }];
  if (kind === "move-to-secrets") {
    const name = issue.path[issue.path.length - 1] ?? "";
    const fix = `${fixCommand(stack, issue.path, "rm")}\n         then ${fixCommand(stack, ["secrets", name])}`;
    return [{ path: issue.path, message: issue.message, fix }];
  }
  return [{ path: issue.path, message: issue.message, fix: fixCommand(stack, issue.path) }];
}

/** Validate the raw config; pure, no Pulumi runtime needed. */
export function parseStackConfig(raw: RawStackConfig): ParseResult {
  const { project, stack, values, secretSources } = raw;
  const problems: ConfigProblem[] = [];
  const input: Record<string, unknown> = {};
  const prefix = `${project}:`;
  for (const [fullKey, text] of Object.entries(values)) {
    if (!fullKey.startsWith(prefix)) continue;
    const key = fullKey.slice(prefix.length);
    let value: unknown = text;
    if (key !== "environment" && key !== "registryPassword" && /^\s*[[{]/.test(text)) {
      try {
        value = JSON.parse(text);
      } catch {
        problems.push({ path: [key], message: "is not valid JSON", fix: fixCommand(stack, [key]) });
        continue;
      }
    }
    input[key] = value;
  }

  // `delivery` names further top-level keys that hold secrets; they are known keys, stored encrypted.
  let delivery: DeliveryConfig | undefined;
  const deliverySecrets: Record<string, string> = {};
  if (input.delivery !== undefined) {
    const parsed = DeliveryConfig.safeParse(input.delivery);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) problems.push(...issueFix(stack, { ...issue, path: ["delivery", ...issue.path] }));
    } else {
      delivery = parsed.data;
      for (const [secretName, key] of Object.entries(delivery.environmentSecrets)) {
        const value = input[key];
        delete input[key];
        if (typeof value !== "string" || value === "") {
          problems.push({
            path: [key],
            message: `is missing; delivery.environmentSecrets.${secretName} reads it`,
            fix: `pulumi config set --stack ${stack} --secret '${key}'   (prompts for the value; or pipe it on stdin)`,
          });
        } else if (!isStoredEncrypted(project, [key], secretSources)) {
          problems.push({
            path: [key],
            message: "is stored in plain text; set it with --secret",
            fix: `pulumi config set --stack ${stack} --secret '${key}'   (prompts for the value; or pipe it on stdin)`,
          });
        } else {
          deliverySecrets[key] = value;
        }
      }
    }
  }

  // Plaintext secrets are refused whatever else is wrong, and before zod sees the values.
  const secrets = input.secrets;
  if (secrets !== null && typeof secrets === "object" && !Array.isArray(secrets)) {
    for (const name of Object.keys(secrets)) {
      if (!isStoredEncrypted(project, ["secrets", name], secretSources)) {
        problems.push({
          path: ["secrets", name],
          message: "is stored in plain text; secrets must be set with --secret",
          fix: fixCommand(stack, ["secrets", name]),
        });
      }
    }
  }
  if (input.registryPassword !== undefined && !isStoredEncrypted(project, ["registryPassword"], secretSources)) {
    problems.push({
      path: ["registryPassword"],
      message: "is stored in plain text; set it with --secret",
      fix: fixCommand(stack, ["registryPassword"]),
    });
  }

  const result = makeStackConfigSchema(project).safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(...issueFix(stack, issue));
  } else {
    problems.push(...crossChecks(result.data, input, stack));
  }
  if (problems.length > 0 || !result.success) return { ok: false, problems };
  return { ok: true, config: { ...result.data, delivery, deliverySecrets } };
}

/** Rules that span keys or depend on the stack's role. */
function crossChecks(config: z.output<ReturnType<typeof makeStackConfigSchema>>, input: Record<string, unknown>, stack: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const rawImage = (input.image ?? {}) as Record<string, unknown>;
  if (config.image.registry && config.registryPassword === undefined) {
    problems.push({
      path: ["registryPassword"],
      message: "is required when image.registry is set",
      fix: fixCommand(stack, ["registryPassword"]),
    });
  }
  if (!config.image.registry && config.registryPassword !== undefined) {
    problems.push({
      path: ["registryPassword"],
      message: "is set but image.registry is not; set image.registry or remove the password",
      fix: fixCommand(stack, ["registryPassword"], "rm"),
    });
  }
  for (const name of Object.keys(config.service.env)) {
    if (name in config.secrets) {
      problems.push({
        path: ["service", "env", name],
        message: "is also set in secrets; keep it in one place",
        fix: fixCommand(stack, ["service", "env", name], "rm"),
      });
    }
  }
  if (config.environment === "prod") {
    if (/^sqlite/.test(config.secrets.DATABASE_URL)) {
      problems.push({
        path: ["secrets", "DATABASE_URL"],
        message: "is the local SQLite default, which prod refuses; use a PostgreSQL URL",
        fix: fixCommand(stack, ["secrets", "DATABASE_URL"]),
      });
    }
    for (const key of ["context", "dockerfile", "baseImage", "platform"]) {
      if (rawImage[key] !== undefined) {
        problems.push({
          path: ["image", key],
          message: "is a build setting, but prod never builds: it runs the digest staging proved ready",
          fix: fixCommand(stack, ["image", key], "rm"),
        });
      }
    }
  } else {
    if (input.promotion !== undefined) {
      problems.push({
        path: ["promotion"],
        message: "only applies to prod stacks (environment is staging)",
        fix: fixCommand(stack, ["promotion"], "rm"),
      });
    }
    if (input.delivery !== undefined) {
      problems.push({
        path: ["delivery"],
        message: "is managed by the prod stack only (it controls production's reviewers); set it there",
        fix: fixCommand(stack, ["delivery"], "rm"),
      });
    }
  }
  return problems;
}

/** The readable error for a list of problems: zod's pretty format plus a fix line for each. */
export function formatProblems(stack: string, problems: ConfigProblem[]): string {
  const lines = problems.map((problem) => {
    const pretty = z.prettifyError({ issues: [{ message: problem.message, path: problem.path }] });
    return `${pretty}\n    fix: ${problem.fix}`;
  });
  const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
  return `Stack "${stack}" config is invalid (${count}); nothing was changed:\n${lines.join("\n")}`;
}

/** The stack config as the program uses it: secrets only as secret Outputs. */
export interface BackendConfig extends Omit<ParsedStackConfig, "secrets" | "registryPassword" | "deliverySecrets"> {
  project: string;
  stack: string;
  secrets: Record<string, pulumi.Output<string>>;
  registryPassword?: pulumi.Output<string>;
  /** The docker provider's own `docker:host`, for the readiness check's engine queries. */
  dockerHost?: string;
}

/** Where the stack settings file is read from; `BACKEND_DELIVERY_STACK_FILE` overrides it. */
export function stackFilePath(stack: string): string {
  return process.env.BACKEND_DELIVERY_STACK_FILE ?? path.resolve(__dirname, "..", `Pulumi.${stack}.yaml`);
}

function readStackFile(file: string, explicit: boolean): unknown {
  if (!fs.existsSync(file)) {
    if (explicit) {
      throw new Error(`BACKEND_DELIVERY_STACK_FILE points to ${file}, which does not exist; fix or unset it`);
    }
    return undefined;
  }
  return parseYaml(fs.readFileSync(file, "utf8"));
}

/**
 * Load and validate this stack's config. Throws one Error listing every problem before anything
 * else happens, so no resource is registered on bad config.
 */
export function loadConfig(): BackendConfig {
  const project = new pulumi.Config().name;
  const stack = pulumi.getStack();
  const file = stackFilePath(stack);
  // The engine's secret-key list is internal to the SDK; read it where it is exposed at runtime.
  const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
  const result = parseStackConfig({
    project,
    stack,
    values: pulumi.runtime.allConfig(),
    secretSources: {
      stackFile: readStackFile(file, process.env.BACKEND_DELIVERY_STACK_FILE !== undefined),
      isSdkSecret: (key) => runtime.isConfigSecret?.(key) ?? false,
    },
  });
  // RunError: the engine prints the message alone, without a stack trace of the program.
  if (!result.ok) throw new pulumi.RunError(formatProblems(stack, result.problems));
  // Plain values of secrets go no further than here: the program only sees secret Outputs.
  const { secrets, registryPassword, ...rest } = result.config;
  // The delivery component reads its secrets through pulumi.Config as secret Outputs itself.
  const plain: Omit<ParsedStackConfig, "secrets" | "registryPassword" | "deliverySecrets"> & {
    deliverySecrets?: unknown;
  } = { ...rest };
  delete plain.deliverySecrets;
  return {
    ...plain,
    project,
    stack,
    secrets: Object.fromEntries(Object.entries(secrets).map(([name, value]) => [name, pulumi.secret(value)])),
    registryPassword: registryPassword === undefined ? undefined : pulumi.secret(registryPassword),
    dockerHost: new pulumi.Config("docker").get("host"),
  };
}
