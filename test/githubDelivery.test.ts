import * as pulumi from "@pulumi/pulumi";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DeliveryConfig, parseDeliveryConfig, REQUIRED_CHECKS } from "../components/deliveryConfig";
import { githubDeliveryFromConfig } from "../components/githubDelivery";

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

function setConfig(extra: Record<string, string> = {}, secrets: string[] = []): void {
  pulumi.runtime.setAllConfig(
    {
      [`${PROJECT}:deliveryPassphrase`]: PASSPHRASE,
      [`${PROJECT}:deliveryBackendUrl`]: BACKEND_URL,
      "github:token": TOKEN,
      ...extra,
    },
    [`${PROJECT}:deliveryPassphrase`, `${PROJECT}:deliveryBackendUrl`, "github:token", ...secrets],
  );
}

const delivery: DeliveryConfig = DeliveryConfig.parse({
  repository: { owner: "acme", name: "backend" },
  productionReviewers: { users: [1001, "1002"], teams: [77] },
});

async function build(config: DeliveryConfig | undefined, env: "staging" | "prod" = "prod") {
  const component = githubDeliveryFromConfig(config, env);
  if (component) await Promise.all(component.resources.map((r) => new Promise((ok) => r.urn.apply(ok))));
  return component;
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
  setConfig();
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

  it("is absent when the stack does not set it", () => {
    expect(parseDeliveryConfig(undefined)).toBeUndefined();
  });

  it("reports every problem at once with the fix", () => {
    let message = "";
    try {
      parseDeliveryConfig({
        repository: { owner: "" },
        productionReviewers: { users: [] },
        environmentSecrets: { GITHUB_TOKEN: "x", "bad-name": "y" },
      });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain("invalid config key 'delivery'");
    expect(message).toContain("repository.owner");
    expect(message).toContain("repository.name");
    expect(message).toContain("name at least one user or team id");
    expect(message).toContain("names starting with GITHUB_ are reserved by GitHub");
    expect(message).toContain("letters, digits and _ only");
    expect(message).toContain("pulumi config set --path delivery.repository.owner");
  });

  it("refuses more than 6 reviewers and unknown keys", () => {
    expect(() =>
      parseDeliveryConfig({
        repository: { owner: "a", name: "b" },
        productionReviewers: { users: [1, 2, 3, 4], teams: [5, 6, 7] },
      }),
    ).toThrow(/at most 6 reviewers/);
    expect(() =>
      parseDeliveryConfig({ repository: { owner: "a", name: "b" }, productionReviewers: { users: [1] }, github: {} }),
    ).toThrow(/Unrecognized key/);
  });
});

describe("GitHubDelivery", () => {
  it("registers nothing when delivery is absent", async () => {
    expect(await build(undefined)).toBeUndefined();
    expect(recorded).toEqual([]);
  });

  it("refuses to run on a staging stack", () => {
    expect(() => githubDeliveryFromConfig(delivery, "staging")).toThrow(/managed by the prod stack only/);
  });

  it("names every missing stack secret without echoing any value", () => {
    pulumi.runtime.setAllConfig({ [`${PROJECT}:deliveryBackendUrl`]: BACKEND_URL }, [
      `${PROJECT}:deliveryBackendUrl`,
    ]);
    let message = "";
    try {
      githubDeliveryFromConfig(delivery, "prod");
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toContain("deliveryPassphrase (feeds PULUMI_CONFIG_PASSPHRASE)");
    expect(message).toContain("github:token");
    expect(message).toContain("pulumi config set --secret deliveryPassphrase");
    expect(message).not.toContain(BACKEND_URL);
    expect(recorded).toEqual([]);
  });

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
    setConfig({ [`${PROJECT}:stateUrl`]: "s3://other" }, [`${PROJECT}:stateUrl`]);
    await build(DeliveryConfig.parse({ ...delivery, environmentSecrets: { STATE_URL: "stateUrl" } }));
    const secrets = byType("github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret");
    expect(secrets.map((s) => [s.name, (s.inputs.value as { value: unknown }).value]).sort()).toEqual([
      ["github-preview-STATE_URL", "s3://other"],
      ["github-production-STATE_URL", "s3://other"],
      ["github-staging-STATE_URL", "s3://other"],
    ]);
  });
});
