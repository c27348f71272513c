import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { parseStackConfig } from "../components/config/parse";
import { DeliveryConfig, REQUIRED_CHECKS } from "../components/delivery/config";
import { GitHubDelivery } from "../components/delivery/github";

const PROJECT = "backend-delivery";
// Canary values: the test proves they reach GitHub's secret inputs only as secrets.
const PASSPHRASE = "canary-passphrase-6b1f0c2e";
const BACKEND_URL = "s3://canary-bucket-91ad/state";
const TOKEN = "canary-token-0d7e55aa";

// The RPC wire form of a secret, as the mock monitor receives it.
const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";

interface Recorded {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  provider: string;
}
const recorded: Recorded[] = [];

function isWireSecret(v: unknown): v is { value: unknown } {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[SECRET_SIG_KEY] === SECRET_SIG;
}


const delivery: DeliveryConfig = DeliveryConfig.parse({
  repository: { owner: "acme", name: "backend" },
  productionReviewers: { users: [1001, "1002"], teams: [77] },
});

/** The component as the program builds it from a parsed `delivery` and the stack secrets it names. */
async function build(config: DeliveryConfig, values: Record<string, string> = { deliveryPassphrase: PASSPHRASE, deliveryBackendUrl: BACKEND_URL }) {
  const environmentSecrets = Object.fromEntries(
    Object.entries(config.environmentSecrets).map(([name, key]) => [name, pulumi.secret(values[key] ?? "")]),
  );
  const component = new GitHubDelivery("github", {
    owner: config.repository.owner,
    repository: config.repository.name,
    defaultBranch: config.defaultBranch,
    productionReviewerUsers: config.productionReviewers.users,
    productionReviewerTeams: config.productionReviewers.teams,
    environmentSecrets,
    token: pulumi.secret(TOKEN),
  });
  await Promise.all(component.resources.map((r) => new Promise((ok) => r.urn.apply(ok))));
  return component;
}

/** A prod stack's raw config with `delivery` and the secrets given, parsed as the program does. */
function parseProd(delivery: unknown, secrets: Record<string, string>, plainKeys: string[] = []) {
  const values: Record<string, string> = {
    [`${PROJECT}:environment`]: "prod",
    [`${PROJECT}:service`]: JSON.stringify({ hostPort: 8081 }),
    [`${PROJECT}:proxy`]: JSON.stringify({ tls: { mode: "upstream" } }),
    [`${PROJECT}:secrets`]: JSON.stringify({ DATABASE_URL: `postgresql://db.internal:5432/app`, SECRET_KEY: "k".repeat(40) }),
    [`${PROJECT}:delivery`]: JSON.stringify(delivery),
    ...Object.fromEntries(Object.entries(secrets).map(([k, v]) => [k.includes(":") ? k : `${PROJECT}:${k}`, v])),
  };
  return parseStackConfig({
    project: PROJECT,
    stack: "prod",
    values,
    secretSources: { isSdkSecret: (key) => key !== `${PROJECT}:delivery` && !plainKeys.includes(key) && !key.endsWith(":environment") && !key.endsWith(":service") && !key.endsWith(":proxy") },
  });
}

const byType = (t: string) => recorded.filter((r) => r.type === t);

beforeAll(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        recorded.push({ type: args.type, name: args.name, inputs: args.inputs, provider: args.provider ?? "" });
        return { id: `${args.name}-id`, state: args.inputs };
      },
      call: (args) => {
        throw new Error(`unexpected call ${args.token}`);
      },
    },
    PROJECT,
    "prod",
  );
});

beforeEach(() => {
  recorded.length = 0;
});

describe("deliveryConfig", () => {
  it("fills defaults from the schema only", () => {
    expect(delivery.defaultBranch).toBe("main");
    expect(delivery.productionReviewers).toEqual({ users: [1001, 1002], teams: [77] });
    expect(delivery.environmentSecrets).toEqual({
      PULUMI_BACKEND_URL: "deliveryBackendUrl",
      PULUMI_CONFIG_PASSPHRASE: "deliveryPassphrase",
    });
  });

  it("reports every problem at once, each with the fix the schema keeps beside the key", () => {
    const result = parseProd(
      { repository: { owner: "" }, productionReviewers: { users: [] }, environmentSecrets: { GITHUB_TOKEN: "x", "bad-name": "y" } },
      { "github:token": TOKEN },
    );
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const byPath = Object.fromEntries(result.problems.map((p) => [p.path.join("."), p]));
    expect(Object.keys(byPath).sort()).toEqual(
      [
        "delivery.repository.owner",
        "delivery.repository.name",
        "delivery.productionReviewers",
        "delivery.environmentSecrets.GITHUB_TOKEN",
        "delivery.environmentSecrets.bad-name",
      ].sort(),
    );
    expect(byPath["delivery.productionReviewers"]?.message).toBe("name at least one user or team id");
    expect(byPath["delivery.environmentSecrets.GITHUB_TOKEN"]?.message).toContain("names starting with GITHUB_ are reserved by GitHub");
    expect(byPath["delivery.environmentSecrets.bad-name"]?.message).toContain("letters, digits and _ only");
    expect(byPath["delivery.repository.name"]?.fix).toBe("pulumi config set --stack prod --path 'delivery.repository.name' <repository>");
    // A problem of a whole object is fixed at the key its schema names.
    expect(byPath["delivery.productionReviewers"]?.fix).toBe("pulumi config set --stack prod --path 'delivery.productionReviewers.users[0]' <numeric id>");
  });

  it("refuses more than 6 reviewers and unknown keys", () => {
    expect(DeliveryConfig.safeParse({ repository: { owner: "a", name: "b" }, productionReviewers: { users: [1, 2, 3, 4], teams: [5, 6, 7] } }).error?.message).toMatch(
      /at most 6 reviewers/,
    );
    expect(DeliveryConfig.safeParse({ repository: { owner: "a", name: "b" }, productionReviewers: { users: [1] }, github: {} }).error?.message).toMatch(
      /Unrecognized key/,
    );
  });

  it("names every missing stack secret and the token, without echoing any value", () => {
    const result = parseProd(delivery, { deliveryBackendUrl: BACKEND_URL });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const text = JSON.stringify(result.problems);
    expect(result.problems.map((p) => [p.path.join("."), p.message])).toEqual([
      ["deliveryPassphrase", "is missing; delivery.environmentSecrets.PULUMI_CONFIG_PASSPHRASE reads it"],
      ["github:token", "is missing; delivery needs a token with admin rights on the repository"],
    ]);
    expect(result.problems.map((p) => p.fix)).toEqual([
      "pulumi config set --stack prod --secret 'deliveryPassphrase'   (prompts for the value; or pipe it on stdin)",
      "pulumi config set --stack prod --secret github:token   (prompts for the value; or pipe it on stdin)",
    ]);
    expect(text).not.toContain(BACKEND_URL);
  });

  it("refuses delivery secrets stored in plain text", () => {
    const result = parseProd(delivery, { deliveryBackendUrl: BACKEND_URL, deliveryPassphrase: PASSPHRASE, "github:token": TOKEN }, [`${PROJECT}:deliveryPassphrase`]);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.problems.map((p) => [p.path.join("."), p.message])).toEqual([["deliveryPassphrase", "is stored in plain text; set it with --secret"]]);
    expect(JSON.stringify(result.problems)).not.toContain(PASSPHRASE);
  });

  it("hands the program every delivery secret when all are set", () => {
    const result = parseProd(delivery, { deliveryBackendUrl: BACKEND_URL, deliveryPassphrase: PASSPHRASE, "github:token": TOKEN });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.deliverySecrets).toEqual({ deliveryPassphrase: PASSPHRASE, deliveryBackendUrl: BACKEND_URL });
    expect(result.config.githubToken).toBe(TOKEN);
  });
});

describe("GitHubDelivery", () => {
  it("registers exactly the environments, policies, secrets and branch protection", async () => {
    await build(delivery);
    const counts = recorded.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.type]: (acc[r.type] ?? 0) + 1 }), {});
    expect(counts).toEqual({
      "backend-delivery:index:GitHubDelivery": 1,
      "pulumi:providers:github": 1,
      "github:index/repositoryEnvironment:RepositoryEnvironment": 3,
      "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy": 2,
      "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret": 6,
      "github:index/branchProtection:BranchProtection": 1,
    });

    const provider = byType("pulumi:providers:github")[0]!;
    expect(provider.name).toBe("github-provider");
    expect(provider.inputs.owner).toBe("acme");
    expect(isWireSecret(provider.inputs.token)).toBe(true);

    const envs = Object.fromEntries(
      byType("github:index/repositoryEnvironment:RepositoryEnvironment").map((r) => [r.name, r.inputs]),
    );
    expect(Object.keys(envs).sort()).toEqual(["github-preview", "github-production", "github-staging"]);
    expect(envs["github-production"]).toEqual({
      repository: "backend",
      environment: "production",
      reviewers: [{ users: [1001, 1002], teams: [77] }],
      preventSelfReview: true,
      canAdminsBypass: false,
      deploymentBranchPolicy: { protectedBranches: false, customBranchPolicies: true },
    });
    expect(envs["github-staging"]).toEqual({
      repository: "backend",
      environment: "staging",
      deploymentBranchPolicy: { protectedBranches: false, customBranchPolicies: true },
    });
    expect(envs["github-preview"]).toEqual({ repository: "backend", environment: "preview" });

    const policies = byType(
      "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy",
    ).map((r) => [r.name, r.inputs]);
    expect(policies.sort()).toEqual([
      ["github-production-branch", { repository: "backend", environment: "production", branchPattern: "main" }],
      ["github-staging-branch", { repository: "backend", environment: "staging", branchPattern: "main" }],
    ]);

    const protection = byType("github:index/branchProtection:BranchProtection")[0]!;
    expect(protection.name).toBe("github-default-branch");
    expect(protection.inputs).toEqual({
      repositoryId: "backend",
      pattern: "main",
      requiredStatusChecks: [{ strict: true, contexts: ["test", "preview"] }],
      allowsDeletions: false,
      allowsForcePushes: false,
    });
    expect([...REQUIRED_CHECKS]).toEqual(["test", "preview"]);

    // Every GitHub resource goes through the explicit provider, never an ambient default one.
    for (const r of recorded.filter((r) => r.type.startsWith("github:"))) {
      expect(r.provider).toMatch(/\$pulumi:providers:github::github-provider::github-provider-id$/);
    }
  });

  it("feeds each environment secret from its stack secret, and every value stays secret", async () => {
    await build(delivery);
    const secrets = byType("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret");
    const seen = secrets.map((s) => {
      const { value, ...rest } = s.inputs;
      expect(isWireSecret(value)).toBe(true);
      expect(s.inputs.plaintextValue).toBeUndefined();
      return [s.name, rest.environment, rest.secretName, (value as { value: unknown }).value];
    });
    expect(seen.sort()).toEqual(
      [
        ["github-preview-PULUMI_BACKEND_URL", "preview", "PULUMI_BACKEND_URL", BACKEND_URL],
        ["github-preview-PULUMI_CONFIG_PASSPHRASE", "preview", "PULUMI_CONFIG_PASSPHRASE", PASSPHRASE],
        ["github-production-PULUMI_BACKEND_URL", "production", "PULUMI_BACKEND_URL", BACKEND_URL],
        ["github-production-PULUMI_CONFIG_PASSPHRASE", "production", "PULUMI_CONFIG_PASSPHRASE", PASSPHRASE],
        ["github-staging-PULUMI_BACKEND_URL", "staging", "PULUMI_BACKEND_URL", BACKEND_URL],
        ["github-staging-PULUMI_CONFIG_PASSPHRASE", "staging", "PULUMI_CONFIG_PASSPHRASE", PASSPHRASE],
      ].sort(),
    );
    // No value ever appears outside a secret wrapper anywhere in any recorded input.
    const plain = JSON.stringify(
      recorded.map((r) =>
        Object.fromEntries(Object.entries(r.inputs).filter(([, v]) => !isWireSecret(v))),
      ),
    );
    for (const canary of [PASSPHRASE, BACKEND_URL, TOKEN]) expect(plain).not.toContain(canary);
  });

  it("maps custom secret names to custom stack keys", async () => {
    await build(DeliveryConfig.parse({ ...delivery, environmentSecrets: { STATE_URL: "stateUrl" } }), { stateUrl: "s3://other" });
    const secrets = byType("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret");
    expect(secrets.map((s) => [s.name, (s.inputs.value as { value: unknown }).value]).sort()).toEqual([
      ["github-preview-STATE_URL", "s3://other"],
      ["github-production-STATE_URL", "s3://other"],
      ["github-staging-STATE_URL", "s3://other"],
    ]);
  });
});
