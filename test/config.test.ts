import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { fixCommand, formatProblems, keyMeta, leafPaths } from "../components/config/fixes";
import { parseStackConfig, type RawStackConfig } from "../components/config/parse";
import { makeStackConfigSchema } from "../components/config/schema";
import { isStoredEncrypted } from "../components/config/secretStorage";
import { PROJECT, removeStackFiles, setUpStack, stagingSetup, STAGING_CANARIES, type StackSetup } from "../support/mocks";
import { defaultEncrypted, raw, SECURE, type Config } from "../support/rawConfig";
import { canaryDatabaseUrl } from "../support/canary";
import { testPublicKey } from "../support/signingKeys";

afterAll(removeStackFiles);

const PG_URL = canaryDatabaseUrl("canary-pg-pass-91c2");
const PROD_KEY = "canary-prod-key-91c2-0123456789abcdef0123";
const PUBLIC_KEY = testPublicKey();
const REGISTRY = { server: "registry.example.com", username: "ci" };
const SIGNING_INIT = "npm run signing -- init   (a key pair: the private key and its password into staging's secrets, the public key into prod's config)";

function stagingConfig(): Config {
  return structuredClone(stagingSetup().config);
}

function prodConfig(): Config {
  return {
    environment: "prod",
    service: { hostPort: 8081 },
    proxy: { tls: { mode: "upstream" } },
    secrets: { DATABASE_URL: PG_URL, SECRET_KEY: PROD_KEY },
  };
}

function errorOf(input: RawStackConfig): string {
  const result = parseStackConfig(input);
  if (result.ok) throw new Error("expected the config to be refused");
  return formatProblems(input.stack, result.problems);
}

interface BadCase {
  name: string;
  /** Starts from a valid config of the given role and breaks it. */
  role?: "staging" | "prod";
  mutate: (c: Config) => void;
  options?: Parameters<typeof raw>[1];
  /** The `→ at <path>` zod prints for the problem. */
  at: string;
  /** The exact fix command the message must hold. */
  fix: string;
}

const svc = (c: Config) => c.service as Config;
const env = (c: Config) => svc(c).env as Config;
const secrets = (c: Config) => c.secrets as Config;

const S = "pulumi config set --stack staging";
const P = "pulumi config set --stack prod";
const SECRET_HINT = "   (prompts for the value; or pipe it on stdin)";

const cases: BadCase[] = [
  { name: "environment missing", mutate: (c) => delete c.environment, at: "environment", fix: `${S} 'environment' staging` },
  { name: "environment not a role", mutate: (c) => (c.environment = "dev"), at: "environment", fix: `${S} 'environment' staging` },
  { name: "service missing", mutate: (c) => delete c.service, at: "service", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "hostPort missing", mutate: (c) => delete svc(c).hostPort, at: "service.hostPort", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "hostPort privileged", mutate: (c) => (svc(c).hostPort = 80), at: "service.hostPort", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "hostPort above 65535", mutate: (c) => (svc(c).hostPort = 70000), at: "service.hostPort", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "hostPort not a number", mutate: (c) => (svc(c).hostPort = "http"), at: "service.hostPort", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "hostPort fractional", mutate: (c) => (svc(c).hostPort = 8080.5), at: "service.hostPort", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "containerPort zero", mutate: (c) => (svc(c).containerPort = 0), at: "service.containerPort", fix: `${S} --path 'service.containerPort' 8000` },
  {
    name: "password in plain env",
    mutate: (c) => (env(c).DB_PASSWORD = "x"),
    at: "service.env.DB_PASSWORD",
    fix: `pulumi config rm --stack staging --path 'service.env.DB_PASSWORD'\n         then ${S} --secret --path 'secrets.DB_PASSWORD'${SECRET_HINT}`,
  },
  {
    name: "token in plain env",
    mutate: (c) => (env(c).API_TOKEN = "x"),
    at: "service.env.API_TOKEN",
    fix: `pulumi config rm --stack staging --path 'service.env.API_TOKEN'\n         then ${S} --secret --path 'secrets.API_TOKEN'${SECRET_HINT}`,
  },
  {
    name: "DATABASE_URL in plain env",
    mutate: (c) => (env(c).DATABASE_URL = "x"),
    at: "service.env.DATABASE_URL",
    fix: `pulumi config rm --stack staging --path 'service.env.DATABASE_URL'\n         then ${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}`,
  },
  {
    name: "lowercase api key in plain env",
    mutate: (c) => (env(c).stripe_api_key = "x"),
    at: "service.env.stripe_api_key",
    fix: `pulumi config rm --stack staging --path 'service.env.stripe_api_key'\n         then ${S} --secret --path 'secrets.stripe_api_key'${SECRET_HINT}`,
  },
  { name: "PORT in env", mutate: (c) => (env(c).PORT = "9000"), at: "service.env.PORT", fix: "pulumi config rm --stack staging --path 'service.env.PORT'" },
  {
    name: "IMAGE_DIGEST in env",
    mutate: (c) => (env(c).IMAGE_DIGEST = `sha256:${"0".repeat(64)}`),
    at: "service.env.IMAGE_DIGEST",
    fix: "pulumi config rm --stack staging --path 'service.env.IMAGE_DIGEST'",
  },
  { name: "invalid env name", mutate: (c) => (env(c)["1BAD"] = "x"), at: "service.env.1BAD", fix: "pulumi config rm --stack staging --path 'service.env.1BAD'" },
  { name: "env value an object", mutate: (c) => (env(c).LOG_LEVEL = { level: "info" }), at: "service.env.LOG_LEVEL", fix: `${S} --path 'service.env.LOG_LEVEL' <value>` },
  { name: "env value a list", mutate: (c) => (env(c).ALLOWED_HOSTS = ["a.example", "b.example"]), at: "service.env.ALLOWED_HOSTS", fix: `${S} --path 'service.env.ALLOWED_HOSTS' <value>` },
  {
    name: "env also in secrets",
    mutate: (c) => {
      env(c).SENTRY_DSN = "https://example.invalid/1";
      secrets(c).SENTRY_DSN = "https://example.invalid/1";
    },
    at: "service.env.SENTRY_DSN",
    fix: "pulumi config rm --stack staging --path 'service.env.SENTRY_DSN'",
  },
  { name: "memory limit too small", mutate: (c) => (svc(c).resources = { memoryMb: 10 }), at: "service.resources.memoryMb", fix: `${S} --path 'service.resources.memoryMb' 512` },
  { name: "cpus zero", mutate: (c) => (svc(c).resources = { cpus: 0 }), at: "service.resources.cpus", fix: `${S} --path 'service.resources.cpus' 1` },
  { name: "pids not a number", mutate: (c) => (svc(c).resources = { pids: "many" }), at: "service.resources.pids", fix: `${S} --path 'service.resources.pids' 256` },
  { name: "unknown top-level key", mutate: (c) => (c.imagee = { context: "." }), at: "imagee", fix: "pulumi config rm --stack staging 'imagee'" },
  { name: "unknown nested key", mutate: (c) => (svc(c).hostport = 8080), at: "service.hostport", fix: "pulumi config rm --stack staging --path 'service.hostport'" },
  {
    name: "secrets missing",
    mutate: (c) => delete c.secrets,
    at: "secrets",
    fix: `${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}\n         ${S} --secret --path 'secrets.SECRET_KEY'${SECRET_HINT}`,
  },
  { name: "SECRET_KEY missing", mutate: (c) => delete secrets(c).SECRET_KEY, at: "secrets.SECRET_KEY", fix: `${S} --secret --path 'secrets.SECRET_KEY'${SECRET_HINT}` },
  { name: "DATABASE_URL missing", mutate: (c) => delete secrets(c).DATABASE_URL, at: "secrets.DATABASE_URL", fix: `${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}` },
  {
    name: "SECRET_KEY in plain text beside an encrypted sibling (the SDK marks the whole object secret)",
    mutate: () => undefined,
    options: { encrypted: ["secrets.DATABASE_URL"], sdkSecret: [`${PROJECT}:secrets`] },
    at: "secrets.SECRET_KEY",
    fix: `${S} --secret --path 'secrets.SECRET_KEY'${SECRET_HINT}`,
  },
  {
    name: "secrets in plain text with no stack file and no SDK secret marking",
    mutate: () => undefined,
    options: { encrypted: [], noStackFile: true },
    at: "secrets.DATABASE_URL",
    fix: `${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}`,
  },
  { name: "SECRET_KEY too short", mutate: (c) => (secrets(c).SECRET_KEY = "short-canary-7f3a"), at: "secrets.SECRET_KEY", fix: `${S} --secret --path 'secrets.SECRET_KEY'${SECRET_HINT}` },
  { name: "DATABASE_URL not a database URL", mutate: (c) => (secrets(c).DATABASE_URL = canaryDatabaseUrl("canary-7f3a", "mysql", "h")), at: "secrets.DATABASE_URL", fix: `${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}` },
  { name: "empty secret", mutate: (c) => (secrets(c).SENTRY_DSN = ""), at: "secrets.SENTRY_DSN", fix: `${S} --secret --path 'secrets.SENTRY_DSN'${SECRET_HINT}` },
  { name: "invalid secret name", mutate: (c) => (secrets(c)["bad-name"] = "canary-7f3a"), at: 'secrets["bad-name"]', fix: "pulumi config rm --stack staging --path 'secrets.bad-name'" },
  { name: "APP_ENV in secrets", mutate: (c) => (secrets(c).APP_ENV = "production"), at: "secrets.APP_ENV", fix: "pulumi config rm --stack staging --path 'secrets.APP_ENV'" },
  {
    name: "SQLite DATABASE_URL on prod",
    role: "prod",
    mutate: (c) => (secrets(c).DATABASE_URL = "sqlite:////data/canary-7f3a.db"),
    at: "secrets.DATABASE_URL",
    fix: `${P} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}`,
  },
  { name: "build setting on prod", role: "prod", mutate: (c) => (c.image = { context: "./backend" }), at: "image.context", fix: "pulumi config rm --stack prod --path 'image.context'" },
  { name: "promotion on staging", mutate: (c) => (c.promotion = { maxAgeHours: 12 }), at: "promotion", fix: "pulumi config rm --stack staging 'promotion'" },
  {
    name: "override without approvedBy",
    role: "prod",
    mutate: (c) => (c.promotion = { override: { reason: "incident 42" } }),
    at: "promotion.override.approvedBy",
    fix: `${P} --path 'promotion.override.approvedBy' '<who>'`,
  },
  {
    name: "override with blank reason",
    role: "prod",
    mutate: (c) => (c.promotion = { override: { reason: "  ", approvedBy: "ops" } }),
    at: "promotion.override.reason",
    fix: `${P} --path 'promotion.override.reason' '<why>'`,
  },
  { name: "negative maxAgeHours", role: "prod", mutate: (c) => (c.promotion = { maxAgeHours: -1 }), at: "promotion.maxAgeHours", fix: `${P} --path 'promotion.maxAgeHours' 24` },
  { name: "fromStack with spaces", role: "prod", mutate: (c) => (c.promotion = { fromStack: "my staging" }), at: "promotion.fromStack", fix: `${P} --path 'promotion.fromStack' organization/backend-delivery/staging` },
  { name: "readiness path without slash", mutate: (c) => (c.readiness = { path: "readyz" }), at: "readiness.path", fix: `${S} --path 'readiness.path' /readyz` },
  { name: "readiness timeout zero", mutate: (c) => (c.readiness = { timeoutSeconds: 0 }), at: "readiness.timeoutSeconds", fix: `${S} --path 'readiness.timeoutSeconds' 120` },
  { name: "readiness interval longer than timeout", mutate: (c) => (c.readiness = { timeoutSeconds: 2, intervalMs: 5000 }), at: "readiness.intervalMs", fix: `${S} --path 'readiness.intervalMs' 1000` },
  {
    // Removed when the probe moved inside the engine: a stack file that still sets it is told to drop it.
    name: "readiness.url, which the probe no longer takes",
    mutate: (c) => (c.readiness = { url: "http://127.0.0.1:8080" }),
    at: "readiness.url",
    fix: "pulumi config rm --stack staging --path 'readiness.url'",
  },
  { name: "keepImages zero", mutate: (c) => (c.release = { keepImages: 0 }), at: "release.keepImages", fix: `${S} --path 'release.keepImages' 3` },
  { name: "keepImages a fraction", mutate: (c) => (c.release = { keepImages: "2.5" }), at: "release.keepImages", fix: `${S} --path 'release.keepImages' 3` },
  { name: "release key misspelt", mutate: (c) => (c.release = { keepImage: 2 }), at: "release.keepImage", fix: "pulumi config rm --stack staging --path 'release.keepImage'" },
  { name: "proxy image empty", mutate: (c) => (c.proxy = { image: "" }), at: "proxy.image", fix: `${S} --path 'proxy.image' caddy:2.10` },
  { name: "successThreshold zero", mutate: (c) => (c.readiness = { successThreshold: 0 }), at: "readiness.successThreshold", fix: `${S} --path 'readiness.successThreshold' 2` },
  {
    name: "staging registry without a signing key",
    mutate: (c) => {
      c.image = { registry: REGISTRY };
      c.registryPassword = "canary-7f3a";
      c.cosignPassword = "canary-7f3a-cosign";
    },
    at: "cosignPrivateKey",
    fix: SIGNING_INIT,
  },
  {
    name: "staging signing key without a registry",
    mutate: (c) => {
      c.cosignPrivateKey = "canary-7f3a-key";
      c.cosignPassword = "canary-7f3a-cosign";
    },
    at: "cosignPrivateKey",
    fix: "pulumi config rm --stack staging 'cosignPrivateKey'",
  },
  {
    name: "cosign password in plain text",
    mutate: (c) => {
      c.image = { registry: REGISTRY };
      c.registryPassword = "canary-7f3a";
      c.cosignPrivateKey = "canary-7f3a-key";
      c.cosignPassword = "canary-7f3a-cosign";
    },
    options: { encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY", "registryPassword", "cosignPrivateKey"] },
    at: "cosignPassword",
    fix: `${S} --secret 'cosignPassword'${SECRET_HINT}`,
  },
  {
    name: "prod registry without a public key (fail closed)",
    role: "prod",
    mutate: (c) => {
      c.image = { registry: REGISTRY };
      c.registryPassword = "canary-7f3a";
    },
    at: "promotion.signing.publicKey",
    fix: `${SIGNING_INIT}\n         or, with staging's public key at hand: pulumi config set --stack prod --path promotion.signing.publicKey < cosign.pub`,
  },
  {
    name: "prod public key that is a private key",
    role: "prod",
    mutate: (c) => {
      c.image = { registry: REGISTRY };
      c.registryPassword = "canary-7f3a";
      c.promotion = { signing: { publicKey: "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nY2FuYXJ5\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----" } };
    },
    at: "promotion.signing.publicKey",
    fix: "pulumi config set --stack prod --path promotion.signing.publicKey < cosign.pub",
  },
  {
    name: "prod public key without a registry",
    role: "prod",
    mutate: (c) => (c.promotion = { signing: { publicKey: PUBLIC_KEY } }),
    at: "promotion.signing",
    fix: "pulumi config rm --stack prod --path 'promotion.signing'",
  },
  {
    name: "prod holding staging's private key",
    role: "prod",
    mutate: (c) => {
      c.image = { registry: REGISTRY };
      c.registryPassword = "canary-7f3a";
      c.promotion = { signing: { publicKey: PUBLIC_KEY } };
      c.cosignPrivateKey = "canary-7f3a-key";
    },
    at: "cosignPrivateKey",
    fix: "pulumi config rm --stack prod 'cosignPrivateKey'",
  },
  {
    name: "registry without password",
    mutate: (c) => (c.image = { registry: { server: "registry.example.com", username: "ci" } }),
    at: "registryPassword",
    fix: `${S} --secret 'registryPassword'${SECRET_HINT}`,
  },
  { name: "registry password without registry", mutate: (c) => (c.registryPassword = "canary-7f3a"), at: "registryPassword", fix: "pulumi config rm --stack staging 'registryPassword'" },
  {
    name: "registry password in plain text",
    mutate: (c) => {
      c.image = { registry: { server: "registry.example.com", username: "ci" } };
      c.registryPassword = "canary-7f3a";
    },
    options: { encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY"] },
    at: "registryPassword",
    fix: `${S} --secret 'registryPassword'${SECRET_HINT}`,
  },
  { name: "registry without server", mutate: (c) => (c.image = { registry: { username: "ci" } }), at: "image.registry.server", fix: `${S} --path 'image.registry.server' ghcr.io` },
  { name: "platform without os", mutate: (c) => (c.image = { platform: "amd64" }), at: "image.platform", fix: `${S} --path 'image.platform' linux/amd64` },
  { name: "image name with spaces", mutate: (c) => (c.image = { name: "My Backend" }), at: "image.name", fix: `${S} --path 'image.name' backend-delivery` },
  { name: "service is not valid JSON", mutate: (c) => (c.service = "{hostPort: 8080"), at: "service", fix: `${S} --path 'service.hostPort' 8080` },
  { name: "orchestrator unknown", mutate: (c) => (svc(c).orchestrator = "kubernetes"), at: "service.orchestrator", fix: `${S} --path 'service.orchestrator' swarm` },
  {
    name: "replicas under container",
    mutate: (c) => (svc(c).replicas = 3),
    at: "service.replicas",
    fix: `pulumi config rm --stack staging --path 'service.replicas'\n         or ${S} --path 'service.orchestrator' swarm`,
  },
  {
    name: "placement under container",
    mutate: (c) => (svc(c).placement = { maxReplicasPerNode: 1 }),
    at: "service.placement",
    fix: `pulumi config rm --stack staging --path 'service.placement'\n         or ${S} --path 'service.orchestrator' swarm`,
  },
  {
    name: "update under container",
    mutate: (c) => (svc(c).update = { parallelism: 2 }),
    at: "service.update",
    fix: `pulumi config rm --stack staging --path 'service.update'\n         or ${S} --path 'service.orchestrator' swarm`,
  },
  {
    name: "SQLite under swarm, which replicas cannot share",
    mutate: (c) => (svc(c).orchestrator = "swarm"),
    at: "secrets.DATABASE_URL",
    fix: `${S} --secret --path 'secrets.DATABASE_URL'${SECRET_HINT}`,
  },
  { name: "replicas zero", mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", replicas: 0 }), at: "service.replicas", fix: `${S} --path 'service.replicas' 3` },
  { name: "replicas above 100", mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", replicas: 101 }), at: "service.replicas", fix: `${S} --path 'service.replicas' 3` },
  {
    name: "constraint that is not one",
    mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", placement: { constraints: ["role=worker"] } }),
    at: "service.placement.constraints[0]",
    fix: `${S} --path 'service.placement.constraints[0]' node.labels.tier==backend`,
  },
  {
    name: "maxReplicasPerNode zero",
    mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", placement: { maxReplicasPerNode: 0 } }),
    at: "service.placement.maxReplicasPerNode",
    fix: `${S} --path 'service.placement.maxReplicasPerNode' 2`,
  },
  { name: "monitorSeconds unbounded", mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", update: { monitorSeconds: 3600 } }), at: "service.update.monitorSeconds", fix: `${S} --path 'service.update.monitorSeconds' 10` },
  { name: "parallelism zero", mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", update: { parallelism: 0 } }), at: "service.update.parallelism", fix: `${S} --path 'service.update.parallelism' 1` },
  { name: "unknown key in update", mutate: (c) => Object.assign(svc(c), { orchestrator: "swarm", update: { order: "stop-first" } }), at: "service.update.order", fix: "pulumi config rm --stack staging --path 'service.update.order'" },
  {
    name: "delivery on staging",
    mutate: (c) => (c.delivery = { repository: { owner: "acme", name: "backend" }, productionReviewers: { users: [1] }, environmentSecrets: { X: "deliveryX" } }),
    options: { encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY"], sdkSecret: [`${PROJECT}:deliveryX`] },
    at: "delivery",
    fix: "pulumi config rm --stack staging 'delivery'",
  },
];

// Set after the table so the delivery case has its referenced secret in place.
const withDeliverySecret = cases.find((c) => c.name === "delivery on staging")!;
const originalMutate = withDeliverySecret.mutate;
withDeliverySecret.mutate = (c) => {
  originalMutate(c);
  c.deliveryX = "canary-delivery-7f3a";
};

function build(testCase: BadCase): RawStackConfig {
  const config = testCase.role === "prod" ? prodConfig() : stagingConfig();
  testCase.mutate(config);
  return raw(config, testCase.options);
}

describe("stack config: valid", () => {
  it("applies the schema's defaults to a minimal staging config", () => {
    const result = parseStackConfig(raw(stagingConfig()));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const { config } = result;
    expect(config.environment).toBe("staging");
    expect(config.image).toEqual({
      context: "./backend",
      dockerfile: "Dockerfile",
      name: "backend-delivery",
      baseImage: "local/python-base:3.11-bookworm",
    });
    expect(config.service).toEqual({
      hostPort: 8080,
      containerPort: 8000,
      env: { LOG_LEVEL: "info" },
      resources: { memoryMb: 512, cpus: 1, pids: 256 },
      orchestrator: "container",
    });
    expect(config.readiness).toEqual({ path: "/readyz", timeoutSeconds: 120, intervalMs: 1000, successThreshold: 2 });
    expect(config.promotion).toEqual({ fromStack: "organization/backend-delivery/staging", maxAgeHours: 24, minCertificateDays: 7 });
    expect(config.proxy).toEqual({
      image: "caddy:2.10",
      httpsPort: 443,
      tls: { mode: "off", acme: { directory: "https://acme-v02.api.letsencrypt.org/directory" } },
    });
    expect(config.release).toEqual({ keepImages: 3 });
    expect(config.registryPassword).toBeUndefined();
    expect(config.tlsPrivateKey).toBeUndefined();
  });

  it("resolves the Swarm keys under orchestrator swarm: 2 replicas, no constraints, one task at a time watched 10 s", () => {
    const config = stagingConfig();
    svc(config).orchestrator = "swarm";
    secrets(config).DATABASE_URL = PG_URL;
    const result = parseStackConfig(raw(config));
    expect(result.ok && result.config.service.orchestrator).toBe("swarm");
    expect(result.ok && result.config.service.swarm).toEqual({
      replicas: 2,
      placement: { constraints: [] },
      update: { parallelism: 1, monitorSeconds: 10 },
    });
  });

  it("takes every Swarm key as set, numbers stored as strings included", () => {
    const config = stagingConfig();
    secrets(config).DATABASE_URL = PG_URL;
    Object.assign(svc(config), {
      orchestrator: "swarm",
      replicas: "5",
      placement: { constraints: ["node.role==worker", " node.labels.tier != edge "], maxReplicasPerNode: 2 },
      update: { parallelism: 2, monitorSeconds: "30" },
    });
    const result = parseStackConfig(raw(config));
    expect(result.ok && result.config.service.swarm).toEqual({
      replicas: 5,
      placement: { constraints: ["node.role==worker", "node.labels.tier != edge"], maxReplicasPerNode: 2 },
      update: { parallelism: 2, monitorSeconds: 30 },
    });
    expect(result.ok && Object.keys(result.config.service)).not.toContain("replicas");
  });

  it("accepts numbers stored as strings by `pulumi config set --path`", () => {
    const config = stagingConfig();
    svc(config).hostPort = "9090";
    svc(config).resources = { cpus: "0.5" };
    const result = parseStackConfig(raw(config));
    expect(result.ok && result.config.service.hostPort).toBe(9090);
    expect(result.ok && result.config.service.resources.cpus).toBe(0.5);
  });

  it("passes env numbers and booleans, as `pulumi config set --path` stores them, on as their text", () => {
    const config = stagingConfig();
    Object.assign(env(config), { WEB_CONCURRENCY: 2, SHUTDOWN_TIMEOUT_SECONDS: 12.5, FEATURE_X: true, FEATURE_Y: false });
    const result = parseStackConfig(raw(config));
    expect(result.ok && result.config.service.env).toEqual({
      LOG_LEVEL: "info",
      WEB_CONCURRENCY: "2",
      SHUTDOWN_TIMEOUT_SECONDS: "12.5",
      FEATURE_X: "true",
      FEATURE_Y: "false",
    });
  });

  it("accepts a whole secrets object stored as one encrypted value", () => {
    const input = raw(stagingConfig(), { encrypted: ["secrets"] });
    expect(parseStackConfig(input).ok).toBe(true);
  });

  it("falls back to the SDK's secret keys when there is no stack file", () => {
    const input = raw(stagingConfig(), { encrypted: [], noStackFile: true, sdkSecret: [`${PROJECT}:secrets`] });
    expect(parseStackConfig(input).ok).toBe(true);
  });

  it("accepts a prod config with promotion override and a registry", () => {
    const config = prodConfig();
    config.image = { registry: { server: "registry.example.com", username: "ci" } };
    config.registryPassword = "canary-registry-91c2";
    config.promotion = { fromStack: "acme/backend-delivery/staging", override: { reason: "incident 42", approvedBy: "ops" }, signing: { publicKey: PUBLIC_KEY } };
    const result = parseStackConfig(raw(config, { stack: "prod" }));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.promotion).toEqual({
      fromStack: "acme/backend-delivery/staging",
      maxAgeHours: 24,
      minCertificateDays: 7,
      override: { reason: "incident 42", approvedBy: "ops" },
      signing: { publicKey: PUBLIC_KEY },
    });
    expect(result.config.registryPassword).toBe("canary-registry-91c2");
  });

  it("ignores other namespaces, and hands docker:host and docker:sshOpts on checked", () => {
    const input = raw(stagingConfig());
    input.values["aws:region"] = "eu-west-1";
    input.values["docker:host"] = "unix:///var/run/docker.sock";
    const local = parseStackConfig(input);
    expect(local.ok && local.config.docker).toEqual({ host: "unix:///var/run/docker.sock" });
    input.values["docker:host"] = "ssh://deploy@server.example.com:2222";
    input.values["docker:sshOpts"] = JSON.stringify(["-i", "/keys/deploy", "-o", "UserKnownHostsFile=/keys/known_hosts"]);
    const remote = parseStackConfig(input);
    expect(remote.ok && remote.config.docker).toEqual({
      host: "ssh://deploy@server.example.com:2222",
      sshOpts: ["-i", "/keys/deploy", "-o", "UserKnownHostsFile=/keys/known_hosts"],
    });
    delete input.values["docker:host"];
    delete input.values["docker:sshOpts"];
    const unset = parseStackConfig(input);
    expect(unset.ok && unset.config.docker).toEqual({});
  });
});

describe("stack config: docker:host and docker:sshOpts", () => {
  const HOST_FIX = "pulumi config set --stack staging docker:host ssh://deploy@server.example.com";
  const bad: [string, Record<string, string>, string, string][] = [
    ["no scheme", { "docker:host": "server.example.com:2375" }, "docker:host", HOST_FIX],
    ["unknown scheme", { "docker:host": "npipe:////./pipe/docker_engine" }, "docker:host", HOST_FIX],
    ["a password in the address", { "docker:host": "ssh://deploy:canary-ssh-pw-7f3a@server.example.com" }, "docker:host", HOST_FIX],
    ["a path after the host", { "docker:host": "ssh://deploy@server.example.com/var/run/docker.sock" }, "docker:host", HOST_FIX],
    ["sshOpts not a list", { "docker:host": "ssh://deploy@server", "docker:sshOpts": "-i /keys/deploy" }, "docker:sshOpts", "pulumi config set --stack staging --path 'docker:sshOpts[0]'"],
    ["sshOpts of numbers", { "docker:host": "ssh://deploy@server", "docker:sshOpts": "[1, 2]" }, "docker:sshOpts", "pulumi config set --stack staging --path 'docker:sshOpts[0]'"],
    ["sshOpts without an ssh host", { "docker:sshOpts": '["-i", "/keys/deploy"]' }, "docker:sshOpts", "pulumi config rm --stack staging docker:sshOpts"],
    ["host key checking off", { "docker:host": "ssh://deploy@server", "docker:sshOpts": '["-o", "StrictHostKeyChecking=no"]' }, "docker:sshOpts", "UserKnownHostsFile=<that file>"],
    ["keys accepted on first sight", { "docker:host": "ssh://deploy@server", "docker:sshOpts": '["-oStrictHostKeyChecking=accept-new"]' }, "docker:sshOpts", "ssh-keyscan"],
    ["known hosts thrown away", { "docker:host": "ssh://deploy@server", "docker:sshOpts": '["-o", "UserKnownHostsFile=/dev/null"]' }, "docker:sshOpts", "UserKnownHostsFile=<that file>"],
  ];
  it.each(bad)("%s is refused with the key and its fix", (_name, values, at, fix) => {
    const input = raw(stagingConfig());
    Object.assign(input.values, values);
    const message = errorOf(input);
    // zod quotes a key with a colon, as it does github:token.
    expect(message).toContain(`→ at ${JSON.stringify([at])}\n`);
    expect(message).toContain(fix);
    expect(message).not.toContain("canary-ssh-pw-7f3a");
  });
});

describe("stack config: each bad config is refused with its key and fix", () => {
  it("has at least 30 distinct bad configs", () => {
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases.map((c) => [c.name, c] as const))("%s", (_name, testCase) => {
    const message = errorOf(build(testCase));
    expect(message).toContain(`→ at ${testCase.at}\n`);
    expect(message).toContain(`fix: ${testCase.fix}`);
    for (const canary of [...STAGING_CANARIES, "canary-pg-pass-91c2", "canary-prod-key-91c2", "canary-7f3a", "canary-delivery"]) {
      expect(message).not.toContain(canary);
    }
  });

  it("reports every problem at once", () => {
    const config = stagingConfig();
    svc(config).hostPort = 80;
    env(config).DB_PASSWORD = "canary-7f3a";
    delete secrets(config).SECRET_KEY;
    config.readinesss = {};
    const result = parseStackConfig(raw(config));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.path.join(".")).sort()).toEqual(
      ["readinesss", "secrets.SECRET_KEY", "service.env.DB_PASSWORD", "service.hostPort"].sort(),
    );
    const message = formatProblems("staging", result.problems);
    expect(message).toMatch(/^Stack "staging" config is invalid \(4 problems\); nothing was changed:/);
  });

  it("refuses plaintext secrets even when the rest of the config is also broken", () => {
    const config = stagingConfig();
    delete config.environment;
    const result = parseStackConfig(raw(config, { encrypted: ["secrets.DATABASE_URL"] }));
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => p.path.join("."))).toEqual(["secrets.SECRET_KEY", "environment"]);
  });
});

describe("fix commands come from the schema", () => {
  const schema = makeStackConfigSchema(PROJECT);

  it("every key has an example, or is a secret that is prompted for", () => {
    const leaves = leafPaths(schema).map((p) => p.join("."));
    // The walk reaches every part of the schema, delivery's included.
    expect(leaves).toEqual(expect.arrayContaining(["environment", "service.hostPort", "service.env.*", "secrets.*", "proxy.image", "delivery.productionReviewers.users.*", "delivery.environmentSecrets.*"]));
    expect(leaves.length).toBeGreaterThan(25);
    const without = leaves.filter((leaf) => {
      const meta = keyMeta(schema, leaf.split("."));
      return meta.example === undefined && meta.secret !== true;
    });
    expect(without).toEqual([]);
  });

  it("shows the example kept beside the key, and prompts for a secret", () => {
    expect(fixCommand(schema, "s", ["service", "resources", "memoryMb"])).toBe("pulumi config set --stack s --path 'service.resources.memoryMb' 512");
    expect(fixCommand(schema, "s", ["promotion", "fromStack"])).toBe(`pulumi config set --stack s --path 'promotion.fromStack' organization/${PROJECT}/staging`);
    expect(fixCommand(schema, "s", ["delivery", "repository", "owner"])).toBe("pulumi config set --stack s --path 'delivery.repository.owner' <owner>");
    expect(fixCommand(schema, "s", ["registryPassword"])).toBe(`pulumi config set --stack s --secret 'registryPassword'${SECRET_HINT}`);
    expect(fixCommand(schema, "s", ["service"])).toBe("pulumi config set --stack s --path 'service.hostPort' 8080");
  });
});

describe("stack file and SDK secret detection", () => {
  const file = {
    config: {
      [`${PROJECT}:secrets`]: { A: SECURE, B: "plain" },
      [`${PROJECT}:registryPassword`]: SECURE,
    },
  };
  const none = { stackFile: file, isSdkSecret: () => false };
  it.each([
    [["secrets", "A"], true],
    [["secrets", "B"], false],
    [["registryPassword"], true],
  ] as const)("%j stored encrypted: %s", (segments, expected) => {
    expect(isStoredEncrypted(PROJECT, [...segments], none)).toBe(expected);
  });

  it("the stack file wins over the SDK for a leaf it records", () => {
    expect(isStoredEncrypted(PROJECT, ["secrets", "B"], { stackFile: file, isSdkSecret: () => true })).toBe(false);
  });

  it("the SDK decides for a leaf the stack file does not record", () => {
    expect(isStoredEncrypted(PROJECT, ["secrets", "C"], { stackFile: file, isSdkSecret: () => true })).toBe(true);
    expect(isStoredEncrypted(PROJECT, ["secrets", "C"], { stackFile: file, isSdkSecret: () => false })).toBe(false);
  });

  it("fix commands never carry a secret value", () => {
    expect(fixCommand(makeStackConfigSchema(PROJECT), "s", ["secrets", "X"])).toBe(`pulumi config set --stack s --secret --path 'secrets.X'${SECRET_HINT}`);
  });
});

describe("bad config through the program: refused before any resource", () => {
  afterEach(() => {
    delete process.env.BACKEND_DELIVERY_STACK_FILE;
  });

  const throughProgram = cases.filter((c) =>
    [
      "environment missing",
      "hostPort privileged",
      "password in plain env",
      "unknown top-level key",
      "unknown nested key",
      "SECRET_KEY missing",
      "SECRET_KEY in plain text beside an encrypted sibling (the SDK marks the whole object secret)",
      "SQLite DATABASE_URL on prod",
      "promotion on staging",
      "override without approvedBy",
      "readiness interval longer than timeout",
      "registry without password",
    ].includes(c.name),
  );

  it("covers a dozen cases", () => {
    expect(throughProgram).toHaveLength(12);
  });

  it.each(throughProgram.map((c) => [c.name, c] as const))("%s", async (_name, testCase) => {
    const config = testCase.role === "prod" ? prodConfig() : stagingConfig();
    testCase.mutate(config);
    const setup: StackSetup = {
      stack: testCase.role === "prod" ? "prod" : "staging",
      config,
      encrypted: testCase.options?.encrypted ?? defaultEncrypted(config),
      sdkSecretKeys: testCase.options?.sdkSecret,
    };
    const { mocks } = await setUpStack(setup);
    vi.resetModules();
    const program = (await import("../index")).default as unknown as () => Promise<unknown>;
    const error = await program().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toContain(`→ at ${testCase.at}\n`);
    expect(error!.message).toContain(`fix: ${testCase.fix}`);
    expect(mocks.resources).toEqual([]);
  });
});
