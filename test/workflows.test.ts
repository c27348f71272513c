import { validateWorkflow } from "@action-validator/core";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DeliveryConfig, ENVIRONMENTS, REQUIRED_CHECKS } from "../components/delivery/config";

const DIR = path.join(__dirname, "../.github/workflows");
const files = fs.readdirSync(DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
const raw = (f: string) => fs.readFileSync(path.join(DIR, f), "utf8");

interface Step {
  name?: string;
  id?: string;
  uses?: string;
  run?: string;
  if?: string;
  with?: Record<string, unknown>;
  env?: Record<string, string>;
}
interface Job {
  name?: string;
  needs?: string | string[];
  environment?: string | { name: string };
  concurrency?: { group: string; "cancel-in-progress"?: boolean };
  permissions?: Record<string, string>;
  env?: Record<string, string>;
  steps: Step[];
}
interface Workflow {
  on: Record<string, unknown>;
  permissions?: Record<string, string>;
  jobs: Record<string, Job>;
}
const load = (f: string) => parse(raw(f)) as Workflow;
const runs = (job: Job) => job.steps.map((s) => s.run ?? "").join("\n");

describe("every workflow", () => {
  it("exists: pull-request.yml and deploy.yml", () => {
    expect(files).toEqual(["deploy.yml", "pull-request.yml"]);
  });

  it.each(files)("%s passes the GitHub Actions schema", (f) => {
    expect(validateWorkflow(raw(f)).errors).toEqual([]);
  });

  it("the validator does reject a broken workflow", () => {
    const broken = raw("deploy.yml").replace("    runs-on: ubuntu-24.04\n", "");
    expect(validateWorkflow(broken).errors.length).toBeGreaterThan(0);
  });

  it.each(files)("%s pins every action to a full commit SHA with its version, or an exact version", (f) => {
    const uses = raw(f)
      .split("\n")
      .filter((l) => /^\s*(-\s+)?uses:/.test(l));
    expect(uses.length).toBeGreaterThan(0);
    for (const line of uses) {
      expect(line).toMatch(/uses: [\w.-]+\/[\w.-]+@(?:[0-9a-f]{40} # v\d+\.\d+\.\d+|v\d+\.\d+\.\d+)$/);
    }
  });

  it.each(files)("%s never puts a secret into a script or echoes one", (f) => {
    const wf = load(f);
    for (const job of Object.values(wf.jobs)) {
      const script = runs(job);
      // Secrets reach steps only through env, never interpolated into the script text.
      expect(script).not.toMatch(/\$\{\{\s*secrets\./);
      expect(script).not.toMatch(/set -x|set -o xtrace/);
      expect(script).not.toMatch(/(echo|printf|cat)\b[^\n|]*\$\{?(PULUMI_CONFIG_PASSPHRASE|PULUMI_BACKEND_URL|GITHUB_TOKEN)\b/);
      // Decrypted config goes to a file, never to the log.
      for (const line of script.replace(/\\\n\s*/g, " ").split("\n").filter((l) => l.includes("--show-secrets"))) {
        expect(line).toMatch(/> "\$dir\/[^"]+\.json"/);
      }
    }
  });

  it.each(files)("%s uses only environments and secrets that GitHubDelivery manages", (f) => {
    const managedSecrets = Object.keys(
      DeliveryConfig.parse({ repository: { owner: "o", name: "n" }, productionReviewers: { users: [1] } })
        .environmentSecrets,
    );
    const referenced = [...raw(f).matchAll(/secrets\.([A-Z_]+)/g)].map((m) => m[1]);
    for (const name of referenced) expect(managedSecrets).toContain(name);
    for (const job of Object.values(load(f).jobs)) {
      if (job.environment !== undefined) {
        expect(Object.values(ENVIRONMENTS)).toContain(
          typeof job.environment === "string" ? job.environment : job.environment.name,
        );
      }
    }
  });
});

describe("pull-request.yml", () => {
  const wf = load("pull-request.yml");

  it("runs on pull requests with read-only default permissions", () => {
    expect(Object.keys(wf.on)).toEqual(["pull_request"]);
    expect(wf.permissions).toEqual({ contents: "read" });
  });

  it("names its jobs exactly the checks branch protection requires", () => {
    expect(Object.values(wf.jobs).map((j) => j.name)).toEqual([...REQUIRED_CHECKS]);
  });

  it("tests with the README's command and audits dependencies", () => {
    const script = runs(wf.jobs.test!);
    expect(script).toContain("npm run test:all");
    expect(script).toContain("npm audit --audit-level=high");
    expect(script).toMatch(/uvx pip-audit==\d+\.\d+\.\d+ --disable-pip --requirement/);
    expect(script).toContain("postgresql");
    expect(script).toContain("scripts/build-base-image.sh");
  });

  it("previews staging and prod after the tests, capturing each exit code", () => {
    const job = wf.jobs.preview!;
    expect(job.needs).toBe("test");
    expect(job.environment).toBe("preview");
    expect(job.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    expect(job.env).toEqual({
      PULUMI_BACKEND_URL: "${{ secrets.PULUMI_BACKEND_URL }}",
      PULUMI_CONFIG_PASSPHRASE: "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
    });
    const install = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(install?.with).toEqual({ "pulumi-version": "3.270.0" });
    for (const stack of ["staging", "prod"]) {
      const step = job.steps.find((s) => s.id === stack)!;
      expect(step.run).toContain("set +e");
      expect(step.run).toContain(`pulumi preview --json --stack ${stack} > "$RUNNER_TEMP/${stack}.json"`);
      expect(step.run).toContain('echo "exit-code=$?" >> "$GITHUB_OUTPUT"');
    }
  });

  it("comments once with both previews, also after a failed preview, redacting current and base-branch secrets", () => {
    const job = wf.jobs.preview!;
    const names = job.steps.map((s) => s.name ?? s.uses);
    const comment = job.steps.find((s) => s.run?.includes("scripts/pr-comment.ts"))!;
    expect(comment.if).toBe("${{ !cancelled() && steps.redact.outcome == 'success' }}");
    expect(comment.env?.GITHUB_TOKEN).toBe("${{ github.token }}");
    expect(comment.run).toContain("npx tsx scripts/pr-comment.ts");
    expect(comment.run).toContain('--stack staging="$RUNNER_TEMP/staging.json" --exit-code staging="$STAGING_EXIT"');
    expect(comment.run).toContain('--stack prod="$RUNNER_TEMP/prod.json" --exit-code prod="$PROD_EXIT"');
    expect(comment.run).toContain("--secrets-file");
    const redact = job.steps.find((s) => s.id === "redact")!;
    expect(redact.run).toContain('pulumi config --show-secrets --json --stack "$stack" > "$dir/$stack-head.json"');
    expect(redact.run).toContain('git show "origin/$BASE_REF:Pulumi.$stack.yaml"');
    expect(redact.env).toEqual({ BASE_REF: "${{ github.base_ref }}" });
    // Order: collect secrets, preview both, comment, then clean up and fail on a failed preview.
    expect(names.indexOf(redact.name)).toBeLessThan(names.indexOf("Preview staging"));
    expect(names.indexOf("Preview prod")).toBeLessThan(names.indexOf(comment.name));
    const cleanup = job.steps.find((s) => s.name === "Remove decrypted values")!;
    expect(cleanup.if).toBe("always()");
    expect(names.at(-1)).toBe("Fail when a preview failed");
  });
});

describe("deploy.yml", () => {
  const wf = load("deploy.yml");

  it("runs on pushes to main only", () => {
    expect(wf.on).toEqual({ push: { branches: ["main"] } });
    expect(wf.permissions).toEqual({ contents: "read" });
  });

  it.each([
    ["staging", "staging", "pulumi-staging", undefined],
    ["prod", "production", "pulumi-prod", "staging"],
  ])("job %s: environment %s, concurrency group %s, needs %s", (id, environment, group, needs) => {
    const job = wf.jobs[id]!;
    expect(job.environment).toBe(environment);
    expect(job.concurrency).toEqual({ group, "cancel-in-progress": false });
    expect(job.needs).toBe(needs);
    expect(runs(job)).toContain(`pulumi up --yes --stack ${id}`);
    expect(job.env).toEqual({
      PULUMI_BACKEND_URL: "${{ secrets.PULUMI_BACKEND_URL }}",
      PULUMI_CONFIG_PASSPHRASE: "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
    });
    expect(job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"))?.with).toEqual({ "pulumi-version": "3.270.0" });
  });

  it("has exactly the staging and prod jobs", () => {
    expect(Object.keys(wf.jobs)).toEqual(["staging", "prod"]);
  });
});
