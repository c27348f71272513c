/**
 * Stack config for the GitHub side of delivery: the project key `delivery` (never `github:*`, which
 * is the GitHub provider's own namespace: `github:token`, `github:owner`). Pure module: no resources.
 */
import { z } from "zod";

/**
 * The pull-request workflow's job names, which GitHub reports as check names. Branch protection
 * requires exactly these, and the workflow test asserts the workflow declares them.
 */
export const REQUIRED_CHECKS = ["test", "preview"] as const;

/** The GitHub environments the workflows use: deploy jobs, and the pull-request preview job. */
export const ENVIRONMENTS = { staging: "staging", production: "production", preview: "preview" } as const;

/** The example a fix command shows for a key (see components/config/fixes.ts). */
const example = <T extends z.ZodType>(schema: T, value: string): T => schema.meta({ example: value });

// GitHub's rule for secret names: https://docs.github.com/en/actions/security-guides/using-secrets-in-github-actions#naming-your-secrets
const SecretName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "letters, digits and _ only, not starting with a digit")
  .refine((s) => !s.toUpperCase().startsWith("GITHUB_"), "names starting with GITHUB_ are reserved by GitHub");

const ConfigKey = example(
  z.string().regex(/^[A-Za-z][A-Za-z0-9_-]*$/, "a key of this project's namespace, e.g. deliveryPassphrase"),
  "deliveryPassphrase",
);

/**
 * A GitHub user or team id: a positive integer, as the environments API takes them. Coerced because
 * `pulumi config set --path` may store a number as a string.
 */
const GitHubId = example(z.coerce.number().int().positive(), "<numeric id>");

/** The `delivery` config object. Absent: no GitHub resource is managed. */
export const DeliveryConfig = z.strictObject({
  /** The repository whose environments, secrets and branch protection are managed. */
  repository: z.strictObject({
    owner: example(z.string().min(1), "<owner>"),
    name: example(z.string().min(1), "<repository>"),
  }),
  /** The branch that deploys; protected, and the only branch the deploy environments accept. */
  defaultBranch: example(z.string().min(1), "main").default("main"),
  /**
   * Who approves a prod deployment, by numeric id (`gh api users/LOGIN --jq .id`,
   * `gh api orgs/ORG/teams/SLUG --jq .id`); GitHub allows up to 6 in all.
   */
  productionReviewers: z
    .strictObject({
      users: z.array(GitHubId).default([]),
      teams: z.array(GitHubId).default([]),
    })
    .refine((r) => r.users.length + r.teams.length >= 1, "name at least one user or team id")
    .refine((r) => r.users.length + r.teams.length <= 6, "GitHub allows at most 6 reviewers")
    .meta({ fixAt: ["users", "0"] }),
  /**
   * Environment secret name -> the key of this project's stack secret that holds its value. Every
   * environment (staging, production, preview) gets the same set: the staging and prod stacks share
   * one backend and, because a stack reference on a passphrase backend decrypts the other stack's
   * state, one passphrase (https://github.com/pulumi/pulumi/issues/4665).
   */
  environmentSecrets: z
    .record(z.string(), ConfigKey)
    // Checked here rather than as the record's key schema, whose errors do not say what is wrong.
    .superRefine((m, ctx) => {
      if (Object.keys(m).length === 0) ctx.addIssue({ code: "custom", message: "map at least one environment secret" });
      for (const key of Object.keys(m)) {
        const r = SecretName.safeParse(key);
        if (!r.success) {
          ctx.addIssue({ code: "custom", path: [key], message: `secret name: ${r.error.issues[0]?.message}` });
        }
      }
    })
    .meta({ fixAt: ["PULUMI_CONFIG_PASSPHRASE"] })
    .default({ PULUMI_BACKEND_URL: "deliveryBackendUrl", PULUMI_CONFIG_PASSPHRASE: "deliveryPassphrase" }),
});
export type DeliveryConfig = z.infer<typeof DeliveryConfig>;
