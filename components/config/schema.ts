/**
 * The stack config schema: one zod object for the project's namespace. Defaults live here and
 * nowhere else. Every leaf carries what its fix command shows: an example value
 * (`.meta({ example })`), or `secret` for a value that must be set with `--secret` and so gets no
 * example. A test walks every leaf, so a key cannot lack one.
 */
import { z } from "zod";
import { TlsMode } from "../contract";
import { DeliveryConfig } from "../delivery/config";
import { hardeningProfile } from "../hardening";
import { looksSecret } from "../names";

/** What a leaf of the schema tells the fix renderer. */
export interface KeyMeta {
  /** The value a fix command shows, quoted for the shell where it needs it. */
  example?: string;
  /** Set with `--secret`: fix commands prompt for it instead of showing a value. */
  secret?: boolean;
  /** For an object: the key inside it whose command fixes a problem of the whole object. */
  fixAt?: string[];
}

const example = <T extends z.ZodType>(schema: T, value: string): T => schema.meta({ example: value } satisfies KeyMeta);
const secret = <T extends z.ZodType>(schema: T): T => schema.meta({ secret: true } satisfies KeyMeta);

/** Environment variables the program sets itself; config may not override them. */
export const PROGRAM_MANAGED_ENV = ["APP_ENV", "PORT", "IMAGE_DIGEST"] as const;

/** Where the program takes each of {@link PROGRAM_MANAGED_ENV} from. */
const MANAGED_FROM: Record<(typeof PROGRAM_MANAGED_ENV)[number], string> = {
  APP_ENV: "from environment",
  PORT: "from service.containerPort",
  IMAGE_DIGEST: "from the digest of the image it runs",
};

/** What a container environment variable name must look like. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Whether a variable name looks like it holds a credential (components/names.ts, shared with the policy pack). */
export { looksSecret };

/** Why `name` cannot be a container environment variable set from config, or undefined when it can. */
export function envNameProblem(name: string): string | undefined {
  if (!ENV_NAME.test(name)) return "not a valid environment variable name (letters, digits and _, not starting with a digit)";
  if ((PROGRAM_MANAGED_ENV as readonly string[]).includes(name)) {
    return `is set by the program (${MANAGED_FROM[name as (typeof PROGRAM_MANAGED_ENV)[number]]}); remove it`;
  }
  return undefined;
}

// `pulumi config set --path a.b 8080` may store the number as a string; accept both spellings.
const fromNumericString = (value: unknown): unknown =>
  typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
const int = (min: number, max: number) => z.preprocess(fromNumericString, z.int().min(min).max(max));
const num = (min: number, max: number) => z.preprocess(fromNumericString, z.number().min(min).max(max));

const DATABASE_URL_SCHEMES = /^(postgresql|postgres|postgresql\+psycopg|sqlite)(\+[a-z0-9]+)?:\/\//;

// Messages here must not contain the value: they end up in CI logs.
const SecretValue = secret(z.string({ error: "expected a string" }).min(1, "must not be empty"));

const Secrets = z
  .object({
    DATABASE_URL: secret(SecretValue.regex(DATABASE_URL_SCHEMES, "expected a postgresql:// (or sqlite:// for a local stack) URL")),
    SECRET_KEY: secret(SecretValue.min(32, "must be at least 32 characters")),
  })
  .catchall(SecretValue)
  .superRefine((secrets, ctx) => {
    for (const name of Object.keys(secrets)) {
      const problem = envNameProblem(name);
      if (problem !== undefined) ctx.addIssue({ code: "custom", path: [name], message: problem, params: { fix: "rm" } });
    }
  });

// `pulumi config set --path service.env.WEB_CONCURRENCY 2` stores the number 2, and `true` the
// boolean: the container gets their text either way.
const EnvValue = example(
  z.union([z.string(), z.number(), z.boolean()], { error: "expected a string, number or boolean" }).transform(String),
  "<value>",
);

const Env = z.record(z.string(), EnvValue).superRefine((env, ctx) => {
  for (const name of Object.keys(env)) {
    const problem = envNameProblem(name);
    if (problem !== undefined) {
      ctx.addIssue({ code: "custom", path: [name], message: problem, params: { fix: "rm" } });
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

/** Let's Encrypt's production ACME directory: what `acme` mode uses unless told otherwise. */
export const LETS_ENCRYPT_DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory";

/** A DNS host name as certificates name it: lowercase labels, no scheme, port or wildcard. */
const HostName = z
  .string()
  .regex(
    /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/,
    "expected a lowercase host name such as api.example.com (no scheme, port or wildcard)",
  );

/** How the backend runs: today's release containers behind the proxy, or a replicated Swarm service. */
export const ORCHESTRATORS = ["container", "swarm"] as const;
export type Orchestrator = (typeof ORCHESTRATORS)[number];
/** Replicas of a Swarm service when `service.replicas` is unset: two, so one can restart while the other serves. */
export const SWARM_DEFAULT_REPLICAS = 2;
/** The keys that only a Swarm service reads (parse.ts refuses them under `container`). */
export const SWARM_ONLY_KEYS = ["replicas", "placement", "update"] as const;

// `node.role==manager`, `node.labels.tier != edge`, `engine.labels.disk==ssd`: what `docker service
// create --constraint` takes (https://docs.docker.com/reference/cli/docker/service/create/#constraint).
const CONSTRAINT = /^(node\.(id|hostname|role|platform\.os|platform\.arch|labels\.[\w.-]+)|engine\.labels\.[\w.-]+)\s*(==|!=)\s*[^\s=!]+$/;

/** `service.*` keys of the Swarm target; see {@link withOrchestrator} for how they resolve. */
const swarmServiceKeys = {
  orchestrator: example(z.enum(ORCHESTRATORS, { error: "expected container or swarm" }), "swarm").default("container"),
  replicas: example(int(1, 100), "3").optional(),
  placement: z
    .strictObject({
      constraints: z
        .array(example(z.string().trim().regex(CONSTRAINT, "expected a Swarm constraint such as node.role==worker or node.labels.tier==backend"), "node.labels.tier==backend"))
        .optional(),
      maxReplicasPerNode: example(int(1, 100), "2").optional(),
    })
    .optional(),
  update: z
    .strictObject({
      /** Tasks Swarm replaces at once. */
      parallelism: example(int(1, 100), "1").default(1),
      /** How long Swarm watches a new task before it counts as updated (its failure then rolls back). */
      monitorSeconds: example(int(1, 300), "10").default(10),
    })
    .prefault({}),
};

/** What the Swarm target runs with, resolved: replicas, placement, and how updates roll. */
export interface SwarmSettings {
  replicas: number;
  placement: { constraints: string[]; maxReplicasPerNode?: number };
  update: { parallelism: number; monitorSeconds: number };
}

/**
 * The `service` object with the Swarm keys resolved: `swarm` holds them (defaults filled in) under
 * `orchestrator: swarm`, and is absent under `container`, which reads none of them.
 */
function withOrchestrator<T extends { orchestrator: Orchestrator; replicas?: number | undefined; placement?: { constraints?: string[] | undefined; maxReplicasPerNode?: number | undefined } | undefined; update: SwarmSettings["update"] }>(
  service: T,
): Omit<T, (typeof SWARM_ONLY_KEYS)[number]> & { swarm?: SwarmSettings } {
  const { replicas, placement, update, ...rest } = service;
  if (service.orchestrator !== "swarm") return rest;
  const swarm: SwarmSettings = {
    replicas: replicas ?? SWARM_DEFAULT_REPLICAS,
    placement: {
      constraints: placement?.constraints ?? [],
      ...(placement?.maxReplicasPerNode === undefined ? {} : { maxReplicasPerNode: placement.maxReplicasPerNode }),
    },
    update,
  };
  return { ...rest, swarm };
}

/** The stack config schema; `project` decides the default promotion source. */
export function makeStackConfigSchema(project: string) {
  return z.strictObject({
    /** Decides the stack's role; stack names are free. */
    environment: example(z.enum(["staging", "prod"], { error: "expected staging or prod" }), "staging"),
    image: z
      .strictObject({
        /** Build context, relative to the project directory. */
        context: example(z.string().min(1), "./backend").default("./backend"),
        /** Dockerfile, relative to the build context. */
        dockerfile: example(z.string().min(1), "Dockerfile").default("Dockerfile"),
        /** Base image passed as the `PYTHON_BASE` build argument; the Dockerfile's default when unset. */
        baseImage: example(z.string().min(1), "python:3.12-slim-bookworm").optional(),
        /** Repository name of the image (without registry server). */
        name: example(
          z
            .string()
            .regex(
              /^[a-z0-9]+([._-][a-z0-9]+)*(\/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?$/,
              "expected a lowercase image name such as backend-delivery or team/backend:1",
            ),
          "backend-delivery",
        ).default("backend-delivery"),
        platform: example(z.string().regex(/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/, "expected os/arch such as linux/amd64"), "linux/amd64").optional(),
        /** Push to this registry and reference the image by repo digest; local-only when unset. */
        registry: z
          .strictObject({ server: example(z.string().min(1), "ghcr.io"), username: example(z.string().min(1), "<user>") })
          .optional(),
      })
      .prefault({}),
    /** Registry password; only with image.registry. */
    registryPassword: SecretValue.optional(),
    /** Staging's cosign private key (PEM, encrypted with cosignPassword); with image.registry. */
    cosignPrivateKey: SecretValue.optional(),
    /** The password of cosignPrivateKey. */
    cosignPassword: SecretValue.optional(),
    service: z
      .strictObject({
      // Below 1024 only with TLS at the proxy (parse.ts): it is then the HTTP port that redirects and answers ACME.
      hostPort: example(int(1, 65535), "8080"),
      containerPort: example(int(1, 65535), "8000").default(8000),
      env: Env.default({}),
      resources: z
        .strictObject({
          memoryMb: example(int(64, 1_048_576), "512").default(hardeningProfile.resources.memoryMb),
          cpus: example(num(0.01, 256), "1").default(hardeningProfile.resources.cpus),
          pids: example(int(16, 1_000_000), "256").default(hardeningProfile.resources.pids),
        })
        .prefault({}),
      ...swarmServiceKeys,
      })
      .transform(withOrchestrator)
      .meta({ fixAt: ["hostPort"] } satisfies KeyMeta),
    secrets: Secrets,
    /** The front proxy that owns `service.hostPort`. */
    proxy: z
      .strictObject({
        /** A Caddy 2 image: the official one by default, or one built where nothing can be pulled. */
        image: example(z.string().min(1), "caddy:2.10").default("caddy:2.10"),
        /** The public host name the stack serves; required when the proxy terminates TLS. */
        domain: example(HostName, "api.example.com").optional(),
        /** Host port for HTTPS; `service.hostPort` stays the plain-HTTP port (redirects, ACME http-01). */
        httpsPort: example(int(1, 65535), "443").default(443),
        tls: z
          .strictObject({
            /** Who terminates TLS; prod must choose acme, certificate or upstream (parse.ts). */
            mode: example(TlsMode, "acme").default("off"),
            /** `acme` mode: the CA the proxy gets and renews its certificate from. */
            acme: z
              .strictObject({
                directory: example(
                  z.url({ protocol: /^https$/, error: "expected the https:// URL of an ACME directory" }),
                  LETS_ENCRYPT_DIRECTORY,
                ).default(LETS_ENCRYPT_DIRECTORY),
                email: example(z.email({ error: "expected an email address" }), "ops@example.com").optional(),
                /** PEM of the CA that signs the ACME server's own HTTPS (a private ACME CA). */
                caRoot: example(z.string().min(1), "< acme-ca-root.pem").optional(),
              })
              .prefault({}),
            /** `certificate` mode: the chain, leaf first (PEM, plain); its key is the secret `tlsPrivateKey`. */
            certificate: example(z.string().min(1), "< fullchain.pem").optional(),
          })
          .prefault({}),
      })
      .prefault({}),
    /** `certificate` mode's private key (PEM), set with `--secret`. */
    tlsPrivateKey: SecretValue.optional(),
    readiness: z
      .strictObject({
        path: example(z.string().startsWith("/", "expected a path starting with /"), "/readyz").default("/readyz"),
        timeoutSeconds: example(int(1, 3600), "120").default(120),
        intervalMs: example(int(50, 60_000), "1000").default(1000),
        successThreshold: example(int(1, 100), "2").default(2),
      })
      .prefault({})
      .refine((r) => r.intervalMs < r.timeoutSeconds * 1000, {
        path: ["intervalMs"],
        message: "must be shorter than readiness.timeoutSeconds",
      }),
    promotion: z
      .strictObject({
        fromStack: example(
          z.string().regex(/^[^\s/]+(\/[^\s/]+\/[^\s/]+)?$/, "expected <organization>/<project>/<stack> or a stack name"),
          `organization/${project}/staging`,
        ).default(`organization/${project}/staging`),
        maxAgeHours: example(num(0.01, 24 * 90), "24").default(24),
        /** Refuse to go on while the certificate prod serves (or is given) expires within this many days. */
        minCertificateDays: example(num(0, 365), "7").default(7),
        /** The public key staging's images must be signed with (cosign.pub, PEM); required with image.registry. */
        signing: z
          .strictObject({ publicKey: example(z.string().min(1, "must not be empty"), '"$(cat cosign.pub)"') })
          .optional(),
        override: z
          .strictObject({
            reason: example(z.string().trim().min(1, "must not be empty"), "'<why>'"),
            approvedBy: example(z.string().trim().min(1, "must not be empty"), "'<who>'"),
          })
          .optional(),
      })
      .prefault({}),
    /** What each Docker host keeps of the stack's images after an update. */
    release: z
      .strictObject({
        /** The newest images kept besides the serving one and the rollback target; older ones are removed. */
        keepImages: example(int(1, 1000), "3").default(3),
      })
      .prefault({}),
    /** GitHub delivery (environments, secrets, branch protection): prod stacks only. */
    delivery: DeliveryConfig.optional(),
  });
}

/** The stack config schema's type, for a project. */
export type StackConfigSchema = ReturnType<typeof makeStackConfigSchema>;
/** The config as the schema outputs it. */
export type StackConfig = z.output<StackConfigSchema>;
