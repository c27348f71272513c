/**
 * The GitHub side of delivery: the environments the workflows deploy through, the secrets those
 * environments hand to the workflows, and protection of the default branch.
 */
import * as github from "@pulumi/github";
import * as pulumi from "@pulumi/pulumi";
import { ENVIRONMENTS, REQUIRED_CHECKS } from "./config";

export interface GitHubDeliveryArgs {
  /** Owner (user or organization) of the repository. */
  owner: string;
  /** Repository name, without the owner. */
  repository: string;
  /** The branch that deploys and is protected. */
  defaultBranch: string;
  /** Numeric ids of the users who may approve a prod deployment. */
  productionReviewerUsers: number[];
  /** Numeric ids of the teams who may approve a prod deployment. */
  productionReviewerTeams: number[];
  /** Environment secret name -> value; every environment gets each one. Kept secret. */
  environmentSecrets: Record<string, pulumi.Input<string>>;
  /** A GitHub token with admin rights on the repository (the provider's `github:token`). */
  token: pulumi.Input<string>;
}

/**
 * Environments `staging` and `production` (deploys from the default branch only; production needs
 * a reviewer other than the one who triggered it, admins included), `preview` (pull requests from
 * any branch), their secrets, and branch protection requiring the pull-request checks.
 */
export class GitHubDelivery extends pulumi.ComponentResource {
  /** Names of the managed environments. */
  readonly environments: pulumi.Output<string[]>;
  /** Check names the default branch requires before a merge. */
  readonly requiredChecks: string[];
  /** Every child resource, for callers that depend on the settings being in place. */
  readonly resources: pulumi.Resource[];

  constructor(name: string, args: GitHubDeliveryArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("backend-delivery:index:GitHubDelivery", name, {}, opts);
    if (args.productionReviewerUsers.length + args.productionReviewerTeams.length === 0) {
      throw new Error(
        "GitHubDelivery: productionReviewerUsers and productionReviewerTeams are both empty; " +
          "production needs at least one reviewer",
      );
    }
    const provider = new github.Provider(
      `${name}-provider`,
      { owner: args.owner, token: args.token },
      { parent: this },
    );
    const child = { parent: this, provider };
    const resources: pulumi.Resource[] = [provider];
    const repository = args.repository;
    const fromDefaultBranchOnly = { protectedBranches: false, customBranchPolicies: true };

    const staging = new github.RepositoryEnvironment(
      `${name}-${ENVIRONMENTS.staging}`,
      { repository, environment: ENVIRONMENTS.staging, deploymentBranchPolicy: fromDefaultBranchOnly },
      child,
    );
    const production = new github.RepositoryEnvironment(
      `${name}-${ENVIRONMENTS.production}`,
      {
        repository,
        environment: ENVIRONMENTS.production,
        reviewers: [{ users: args.productionReviewerUsers, teams: args.productionReviewerTeams }],
        preventSelfReview: true,
        // Admins would otherwise skip the review that the production gate relies on.
        canAdminsBypass: false,
        deploymentBranchPolicy: fromDefaultBranchOnly,
      },
      child,
    );
    // Pull requests preview from their own branches, so this one has no branch policy.
    const preview = new github.RepositoryEnvironment(
      `${name}-${ENVIRONMENTS.preview}`,
      { repository, environment: ENVIRONMENTS.preview },
      child,
    );
    resources.push(staging, production, preview);

    const deployEnvironments = { [ENVIRONMENTS.staging]: staging, [ENVIRONMENTS.production]: production };
    for (const [key, env] of Object.entries(deployEnvironments)) {
      resources.push(new github.RepositoryEnvironmentDeploymentPolicy(
        `${name}-${key}-branch`,
        { repository, environment: env.environment, branchPattern: args.defaultBranch },
        child,
      ));
    }

    for (const [key, env] of Object.entries({ ...deployEnvironments, [ENVIRONMENTS.preview]: preview })) {
      for (const [secretName, value] of Object.entries(args.environmentSecrets)) {
        resources.push(new github.ActionsEnvironmentSecret(
          `${name}-${key}-${secretName}`,
          // `value` replaces the deprecated `plaintextValue` in @pulumi/github v6, which marks it
          // secret itself; the test asserts that it reaches the engine only as a secret.
          { repository, environment: env.environment, secretName, value },
          child,
        ));
      }
    }

    resources.push(new github.BranchProtection(
      `${name}-default-branch`,
      {
        repositoryId: repository,
        pattern: args.defaultBranch,
        requiredStatusChecks: [{ strict: true, contexts: [...REQUIRED_CHECKS] }],
        allowsDeletions: false,
        allowsForcePushes: false,
      },
      child,
    ));

    this.environments = pulumi.all([staging.environment, production.environment, preview.environment]);
    this.requiredChecks = [...REQUIRED_CHECKS];
    this.resources = resources;
    this.registerOutputs({ environments: this.environments, requiredChecks: this.requiredChecks });
  }
}
