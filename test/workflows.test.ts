import { validateWorkflow } from "@action-validator/core";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { DeliveryConfig, ENVIRONMENTS, REQUIRED_CHECKS } from "../components/delivery/config";
import { makeSshKey, runBash } from "../support/bash";
import { createFakePulumi } from "../support/fakePulumi";

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
  uses?: string;
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
/** A script's lines, continuation lines joined, trimmed. */
const lines = (script: string) => script.replace(/\\\n\s*/g, " ").split("\n").map((l) => l.trim());

/** The jobs that reach the servers over SSH, and the stacks each one runs. */
const SSH_JOBS = [
  { file: "deploy.yml", id: "staging", stacks: ["staging"] },
  { file: "deploy.yml", id: "prod", stacks: ["prod"] },
  { file: "drift.yml", id: "drift", stacks: ["staging", "prod"] },
  { file: "pull-request.yml", id: "preview", stacks: ["staging", "prod"] },
] as const;
const sshJob = (j: (typeof SSH_JOBS)[number]) => load(j.file).jobs[j.id]!;

/**
 * Environment secrets set by hand in each environment (README, "Pull requests and deployment"):
 * GitHubDelivery gives every environment the same values, but each environment has its own key and
 * servers, so it does not manage these.
 */
const PER_ENVIRONMENT_SECRETS = ["SSH_PRIVATE_KEY", "SSH_KNOWN_HOSTS"];

/** The only lines that may print a secret variable: into a mode-600 file, or into pulumi's stdin. */
const SANCTIONED = [
  /^printf '%s\\n' "\$SSH_PRIVATE_KEY" > ~\/\.ssh\/id_ed25519$/,
  /^printf '%s\\n' "\$SSH_KNOWN_HOSTS" > ~\/\.ssh\/known_hosts$/,
  /^printf '%s' "\$GITHUB_TOKEN" \| pulumi config set --stack (staging|prod) --secret registryPassword$/,
];
const sanctioned = (line: string) => SANCTIONED.some((r) => r.test(line));

describe("every workflow", () => {
  it("exists: pull-request.yml, deploy.yml and drift.yml", () => {
    expect(files).toEqual(["deploy.yml", "drift.yml", "pull-request.yml"]);
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

  it.each(files)("%s: every uses: (steps and jobs) is a full 40-hex commit SHA", (f) => {
    const wf = load(f);
    const uses = Object.values(wf.jobs).flatMap((job) => [job.uses, ...job.steps.map((s) => s.uses)]).filter((u) => u !== undefined);
    expect(uses.length).toBeGreaterThan(0);
    for (const u of uses) expect(u).toMatch(/^[\w.-]+\/[\w.-]+(?:\/[\w./-]+)?@[0-9a-f]{40}$/);
  });

  it.each(files)("%s never puts a secret into a script or echoes one", (f) => {
    const wf = load(f);
    for (const job of Object.values(wf.jobs)) {
      const script = runs(job);
      // Secrets reach steps only through env, never interpolated into the script text.
      expect(script).not.toMatch(/\$\{\{\s*secrets\./);
      expect(script).not.toMatch(/set -x|set -o xtrace/);
      // Outside the sanctioned lines (a mode-600 file, pulumi's stdin), no secret is printed.
      const unsanctioned = lines(script).filter((l) => !sanctioned(l)).join("\n");
      expect(unsanctioned).not.toMatch(/(echo|printf|cat)\b[^\n|]*\$\{?(PULUMI_CONFIG_PASSPHRASE|PULUMI_BACKEND_URL|GITHUB_TOKEN)\b/);
      // The SSH key, the host keys and the token appear in no other line at all: not in argv, not in the log.
      for (const line of lines(script).filter((l) => /\$\{?(GITHUB_TOKEN|SSH_PRIVATE_KEY|SSH_KNOWN_HOSTS)\b/.test(l))) {
        expect(sanctioned(line), line).toBe(true);
      }
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
    for (const name of referenced) expect([...managedSecrets, ...PER_ENVIRONMENT_SECRETS]).toContain(name);
    expect(managedSecrets.filter((n) => PER_ENVIRONMENT_SECRETS.includes(n))).toEqual([]);
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

  it("tests through .ci/run (everything the tests need, then the README's command) and audits dependencies first", () => {
    const script = runs(wf.jobs.test!);
    expect(script).toContain("npm audit --audit-level=high");
    expect(script).toMatch(/uvx pip-audit==\d+\.\d+\.\d+ --disable-pip --requirement/);
    expect(script.indexOf("pip-audit")).toBeLessThan(script.indexOf("bash .ci/run"));
    expect(script).toContain("sudo --preserve-env=PATH,HOME,NODE_EXTRA_CA_CERTS bash .ci/run");
    // The end-to-end suite needs the Pulumi CLI: the same pinned action as the preview job.
    const pulumi = (job: (typeof wf.jobs)[string]) => job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(pulumi(wf.jobs.test!)).toEqual(pulumi(wf.jobs.preview!));
    const ci = fs.readFileSync(path.join(__dirname, "../.ci/run"), "utf8");
    expect(ci.trimEnd().split("\n").at(-1)).toBe("exec npm run test:all");
    for (const needed of ["postgresql", "scripts/build-base-image.sh", "scripts/build-proxy-image.sh", "pebble", "install-supply-chain-tools.sh"]) expect(ci).toContain(needed);
  });

  it("previews staging and prod after the tests, capturing each exit code", () => {
    const job = wf.jobs.preview!;
    expect(job.needs).toBe("test");
    expect(job.environment).toBe("preview");
    expect(job.permissions).toEqual({ contents: "read", "pull-requests": "write", packages: "read" });
    expect(job.env).toEqual({
      PULUMI_BACKEND_URL: "${{ secrets.PULUMI_BACKEND_URL }}",
      PULUMI_CONFIG_PASSPHRASE: "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
    });
    const install = job.steps.find((s) => s.uses?.startsWith("pulumi/actions@"));
    expect(install?.with).toEqual({ "pulumi-version": "3.270.0" });
    for (const stack of ["staging", "prod"]) {
      const step = job.steps.find((s) => s.id === stack)!;
      expect(step.run).toContain("set +e");
      expect(step.run).toContain(`pulumi preview --json --stack ${stack} --policy-pack policy > "$RUNNER_TEMP/${stack}.json"`);
      expect(step.run).toContain('echo "exit-code=$code" >> "$GITHUB_OUTPUT"');
      // The policy pack's findings, which --json leaves out, reach the comment's log of a failed preview.
      expect(step.run).toContain(`if [ "$code" != 0 ]; then pulumi preview --stack ${stack} --policy-pack policy --non-interactive >> "$RUNNER_TEMP/${stack}.log" 2>&1; fi`);
    }
  });

  it("installs the policy pack, and cosign for the gate's verification and the comment's SBOMs", () => {
    // The test job through .ci/run, which installs the policy pack, cosign and syft.
    const ci = fs.readFileSync(path.join(__dirname, "../.ci/run"), "utf8");
    for (const script of [runs(wf.jobs.preview!), ci]) expect(script).toContain("npm ci --prefix policy --no-audit --no-fund");
    expect(ci).toContain("bash scripts/install-supply-chain-tools.sh");
    expect(runs(wf.jobs.test!)).toContain("npm audit --audit-level=high --prefix policy");
    const job = wf.jobs.preview!;
    const names = job.steps.map((s) => s.name);
    expect(runs(job)).toContain('bash scripts/install-supply-chain-tools.sh cosign >> "$GITHUB_PATH"');
    expect(names.indexOf("Install cosign")).toBeLessThan(names.indexOf("Preview prod"));
    expect(job.steps.find((s) => s.run?.includes("scripts/pr-comment.ts"))!.run).toContain('--sbom-config "$RUNNER_TEMP/redact/prod-head.json"');
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
    expect(runs(job)).toContain(`pulumi up --yes --stack ${id} --policy-pack policy`);
    expect(runs(job)).toContain("npm ci --prefix policy --no-audit --no-fund");
    // Staging signs (cosign) and makes the SBOM (syft); prod's gate verifies (cosign), before the update.
    const install = job.steps.find((s) => s.run?.startsWith("bash scripts/install-supply-chain-tools.sh"))!;
    expect(install.run).toBe(`bash scripts/install-supply-chain-tools.sh${id === "prod" ? " cosign" : ""} >> "$GITHUB_PATH"`);
    expect(job.steps.indexOf(install)).toBeLessThan(job.steps.findIndex((s) => s.run?.startsWith("pulumi up")));
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

describe("drift.yml", () => {
  const wf = load("drift.yml");
  const job = wf.jobs.drift!;

  it("runs on a schedule and by hand, with read-only default permissions, one check at a time", () => {
    expect(Object.keys(wf.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect((wf.on.schedule as { cron: string }[]).map((s) => s.cron)).toEqual(["17 5 * * *"]);
    expect(wf.permissions).toEqual({ contents: "read" });
    expect((wf as unknown as { concurrency: unknown }).concurrency).toEqual({ group: "drift", "cancel-in-progress": false });
  });

  it("reaches the servers as the preview does (its environment and secrets), and never updates anything", () => {
    expect(job.environment).toBe("preview");
    expect(job.env).toEqual({
      PULUMI_BACKEND_URL: "${{ secrets.PULUMI_BACKEND_URL }}",
      PULUMI_CONFIG_PASSPHRASE: "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
    });
    const script = runs(job);
    const subcommands = new Set([...script.matchAll(/\bpulumi\s+([a-z]+)/g)].map((m) => m[1]));
    expect(subcommands).toEqual(new Set(["config"]));
    expect(script).not.toMatch(/\bpulumi\s+(up|update|refresh|destroy|import|state|cancel)\b/);
    // npm run drift runs `pulumi preview --refresh --expect-no-changes` (scripts/drift.ts): no update.
    const drift = fs.readFileSync(path.join(__dirname, "../scripts/drift.ts"), "utf8");
    expect(drift).toContain('["preview", "--refresh", "--expect-no-changes", "--json", "--stack", args.stack, "--non-interactive", ...policy]');
    // Prod's gate verifies the image in a preview too; the pack runs on every preview the project makes.
    expect(runs(job)).toContain('bash scripts/install-supply-chain-tools.sh cosign >> "$GITHUB_PATH"');
    expect(runs(job)).toContain("npm ci --prefix policy --no-audit --no-fund");
    expect(drift).not.toMatch(/"(up|refresh|destroy)"/);
  });

  it("checks both stacks whatever the first found, reports to the one issue per stack, then fails on drift", () => {
    const names = job.steps.map((s) => s.name ?? s.uses);
    for (const stack of ["staging", "prod"]) {
      const step = job.steps.find((s) => s.id === stack)!;
      expect(lines(step.run ?? "").filter((l) => l !== "")).toEqual(["set +e", `npm run --silent drift -- ${stack} --github`, 'echo "exit-code=$?" >> "$GITHUB_OUTPUT"']);
      expect(step.env).toEqual({ GITHUB_TOKEN: "${{ github.token }}" });
    }
    expect(names.indexOf("Check staging")).toBeLessThan(names.indexOf("Check prod"));
    const last = job.steps.at(-1)!;
    expect(last.env).toEqual({ STAGING_EXIT: "${{ steps.staging.outputs.exit-code }}", PROD_EXIT: "${{ steps.prod.outputs.exit-code }}" });
    const verdict = runBash(last.run!, { env: { HOME: os.tmpdir(), STAGING_EXIT: "0", PROD_EXIT: "1" } });
    expect(verdict.code).toBe(1);
    expect(verdict.stdout).toContain("prod: drift check exit 1");
    expect(runBash(last.run!, { env: { HOME: os.tmpdir(), STAGING_EXIT: "0", PROD_EXIT: "0" } }).code).toBe(0);
  });
});

describe("workflows that reach the servers over SSH", () => {
  const byName = (job: Job, name: string) => {
    const step = job.steps.find((s) => s.name === name);
    if (step === undefined) throw new Error(`no step named "${name}"`);
    return step;
  };
  const INSTALL = "Install the SSH key and the servers' host keys";
  const REMOVE = "Remove the SSH key";
  const pulumiSteps = (job: Job) => job.steps.filter((s) => /\bpulumi (up|preview|config --show-secrets)\b|\bnpm run --silent drift\b/.test(s.run ?? ""));
  const homes: string[] = [];
  const scratchHome = () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "bd-home-"));
    homes.push(home);
    return home;
  };
  afterAll(() => {
    for (const home of homes) fs.rmSync(home, { recursive: true, force: true });
  });

  it("are exactly the two deploy jobs, the preview job and the drift check", () => {
    const withSsh = files.flatMap((f) =>
      Object.entries(load(f).jobs)
        .filter(([, job]) => /\bSSH_PRIVATE_KEY\b/.test(JSON.stringify(job)))
        .map(([id]) => `${f}:${id}`),
    );
    expect(withSsh).toEqual(SSH_JOBS.map((j) => `${j.file}:${j.id}`));
  });

  it.each(SSH_JOBS)("$file $id: the key and host keys come from env only, written under umask 077, never echoed", (j) => {
    const job = sshJob(j);
    const step = byName(job, INSTALL);
    expect(step.env).toEqual({
      SSH_PRIVATE_KEY: "${{ secrets.SSH_PRIVATE_KEY }}",
      SSH_KNOWN_HOSTS: "${{ secrets.SSH_KNOWN_HOSTS }}",
    });
    const script = lines(step.run ?? "").filter((l) => l !== "");
    expect(script).toEqual([
      "umask 077",
      "mkdir -p ~/.ssh && chmod 700 ~/.ssh",
      // A file left by someone else keeps its mode when written to; a new one gets umask's 600.
      "rm -f ~/.ssh/id_ed25519 ~/.ssh/known_hosts",
      `printf '%s\\n' "$SSH_PRIVATE_KEY" > ~/.ssh/id_ed25519`,
      `printf '%s\\n' "$SSH_KNOWN_HOSTS" > ~/.ssh/known_hosts`,
    ]);
    // The secrets reach this step only: no other step of any workflow names them.
    const elsewhere = job.steps.filter((s) => s !== step && /SSH_(PRIVATE_KEY|KNOWN_HOSTS)/.test(JSON.stringify(s)));
    expect(elsewhere).toEqual([]);
  });

  it.each(SSH_JOBS)("$file $id: the install step writes mode-600 files and prints nothing", (j) => {
    const key = makeSshKey();
    try {
      const home = scratchHome();
      fs.mkdirSync(path.join(home, ".ssh"), { mode: 0o755 });
      fs.writeFileSync(path.join(home, ".ssh", "id_ed25519"), "stale", { mode: 0o644 });
      const knownHosts = `staging.example.com ${key.publicKey}`;
      const r = runBash(byName(sshJob(j), INSTALL).run!, { env: { HOME: home, SSH_PRIVATE_KEY: key.privateKey, SSH_KNOWN_HOSTS: knownHosts } });
      expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
      const mode = (f: string) => fs.statSync(path.join(home, ".ssh", f)).mode & 0o777;
      expect(mode("")).toBe(0o700);
      expect(mode("id_ed25519")).toBe(0o600);
      expect(mode("known_hosts")).toBe(0o600);
      // The key as GitHub hands it over (without its last newline, often) still ends in one.
      expect(fs.readFileSync(path.join(home, ".ssh", "id_ed25519"), "utf8")).toBe(`${key.privateKey}\n`);
      expect(fs.readFileSync(path.join(home, ".ssh", "known_hosts"), "utf8")).toBe(`${knownHosts}\n`);
    } finally {
      key.cleanup();
    }
  });

  it.each(SSH_JOBS)("$file $id: pins OpenSSH and checks the Docker host of $stacks before any pulumi step", (j) => {
    const job = sshJob(j);
    const names = job.steps.map((s) => s.name ?? s.uses);
    const target = job.steps.find((s) => s.run?.includes("scripts/ci/ssh-target.sh"))!;
    expect(target.run).toBe(`bash scripts/ci/ssh-target.sh ${j.stacks.join(" ")}`);
    expect(target.env).toBeUndefined();
    expect(names.indexOf(INSTALL)).toBeLessThan(names.indexOf(target.name));
    for (const step of pulumiSteps(job)) expect(names.indexOf(target.name)).toBeLessThan(names.indexOf(step.name));
  });

  it.each(SSH_JOBS)("$file $id: removes the key, host keys and SSH config in a last if: always() step", (j) => {
    const job = sshJob(j);
    const names = job.steps.map((s) => s.name ?? s.uses);
    const remove = byName(job, REMOVE);
    expect(remove.if).toBe("always()");
    // The job's shared SSH connections are closed before the key goes (test/remoteEngine.docker.test.ts
    // runs this against a real server), so none outlives it.
    expect(lines(remove.run ?? "").filter((l) => l !== "" && !l.startsWith("#"))).toEqual([
      "for socket in ~/.ssh/cm-*; do",
      `if [ -S "$socket" ]; then ssh -o ControlPath="$socket" -O exit server 2>/dev/null || true; fi`,
      "done",
      "rm -f ~/.ssh/id_ed25519 ~/.ssh/known_hosts ~/.ssh/config",
    ]);
    // After every step that uses the key; only the preview's own verdict may follow it.
    for (const step of pulumiSteps(job)) expect(names.indexOf(step.name)).toBeLessThan(names.indexOf(REMOVE));
    const verdict = { preview: ["Fail when a preview failed"], drift: ["Fail when a stack drifted or could not be checked"] } as Record<string, string[]>;
    expect(names.slice(names.indexOf(REMOVE) + 1)).toEqual(verdict[j.id] ?? []);

    const home = scratchHome();
    fs.mkdirSync(path.join(home, ".ssh"), { mode: 0o700 });
    for (const f of ["id_ed25519", "known_hosts", "config"]) fs.writeFileSync(path.join(home, ".ssh", f), "x", { mode: 0o600 });
    expect(runBash(remove.run!, { env: { HOME: home } }).code).toBe(0);
    expect(fs.readdirSync(path.join(home, ".ssh"))).toEqual([]);
  });

  it.each(SSH_JOBS)("$file $id: the run's token reaches `pulumi config set --secret registryPassword` on stdin only", (j) => {
    const job = sshJob(j);
    const names = job.steps.map((s) => s.name ?? s.uses);
    const steps = job.steps.filter((s) => /registryPassword/.test(JSON.stringify(s)));
    expect(steps).toHaveLength(1);
    const step = steps[0]!;
    expect(step.env).toEqual({ GITHUB_TOKEN: "${{ github.token }}" });
    expect(lines(step.run ?? "").filter((l) => l !== "")).toEqual(
      j.stacks.map((stack) => `printf '%s' "$GITHUB_TOKEN" | pulumi config set --stack ${stack} --secret registryPassword`),
    );
    // Set before any update or preview, and in the preview before the values to redact are collected.
    for (const s of pulumiSteps(job)) expect(names.indexOf(step.name)).toBeLessThan(names.indexOf(s.name));
    // Never committed: no step can push (persist-credentials: false) and none tries.
    expect(runs(job)).not.toMatch(/\bgit (commit|push)\b/);

    // Run the step itself: the token is on pulumi's stdin, byte for byte, and nowhere in argv or output.
    const token = "canary-registry-token-3f9a1c7e";
    const fake = createFakePulumi({ stacks: { staging: {}, prod: {} } });
    try {
      const r = runBash(step.run!, {
        env: { HOME: scratchHome(), GITHUB_TOKEN: token, PULUMI_CONFIG_PASSPHRASE: "p", ...fake.env },
        binDirs: [fake.binDir],
      });
      expect(r).toEqual({ code: 0, stdout: "", stderr: "" });
      const calls = fake.calls();
      expect(calls.map((c) => c.argv)).toEqual(j.stacks.map((stack) => ["config", "set", "--stack", stack, "--secret", "registryPassword"]));
      for (const c of calls) expect(c.stdin).toBe(token);
      for (const stack of j.stacks) expect(fake.stacks()[stack]?.registryPassword).toEqual({ value: token, secret: true });
    } finally {
      fake.cleanup();
    }
  });

  it("GHCR: packages: write only in the staging deploy job; prod, the preview and the drift check read", () => {
    expect(load("deploy.yml").jobs.staging!.permissions).toEqual({ contents: "read", packages: "write" });
    expect(load("drift.yml").jobs.drift!.permissions).toEqual({ contents: "read", issues: "write", packages: "read" });
    expect(load("deploy.yml").jobs.prod!.permissions).toEqual({ contents: "read", packages: "read" });
    expect(load("pull-request.yml").jobs.preview!.permissions).toEqual({ contents: "read", "pull-requests": "write", packages: "read" });
    const packageWriters = files.flatMap((f) => {
      const wf = load(f);
      const levels = [{ id: "(workflow)", permissions: wf.permissions }, ...Object.entries(wf.jobs).map(([id, job]) => ({ id, permissions: job.permissions }))];
      return levels.filter((l) => l.permissions?.packages === "write" || JSON.stringify(l.permissions ?? {}).includes("write-all")).map((l) => `${f}:${l.id}`);
    });
    expect(packageWriters).toEqual(["deploy.yml:staging"]);
  });

  it("the preview is read-only: pulumi preview and config only, never up, refresh, destroy or any state change", () => {
    const job = load("pull-request.yml").jobs.preview!;
    const script = [runs(job), fs.readFileSync(path.join(__dirname, "../scripts/ci/ssh-target.sh"), "utf8")].join("\n");
    const subcommands = [...script.matchAll(/\bpulumi\s+([a-z]+)/g)].map((m) => m[1]);
    expect(subcommands.length).toBeGreaterThan(0);
    expect(new Set(subcommands)).toEqual(new Set(["preview", "config"]));
    expect(script).not.toMatch(/\bpulumi\s+(up|update|refresh|destroy|import|state|cancel|stack)\b/);
    expect(script).not.toMatch(/--refresh\b|--run-program\b|--import-file\b/);
    // pulumi/actions only installs the CLI: no `command:` input that would run one.
    for (const s of job.steps.filter((x) => x.uses?.startsWith("pulumi/actions@"))) expect(Object.keys(s.with ?? {})).toEqual(["pulumi-version"]);
  });
});

describe("workflow linters", () => {
  const testAll = fs.readFileSync(path.join(__dirname, "../scripts/test-all.sh"), "utf8");
  const ciRun = fs.readFileSync(path.join(__dirname, "../.ci/run"), "utf8");
  const lint = fs.readFileSync(path.join(__dirname, "../scripts/lint-workflows.sh"), "utf8");

  it("actionlint and zizmor run at pinned versions, offline, from the README's test command", () => {
    expect(lint).toMatch(/^ACTIONLINT_VERSION="\d+\.\d+\.\d+"$/m);
    expect(lint).toMatch(/^ZIZMOR_VERSION="\d+\.\d+\.\d+"$/m);
    expect(lint).toContain('go install "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"');
    expect(lint).toMatch(/"\$zizmor" --offline .*\.github\/workflows/);
    // Default settings: no config file, no persona, no severity filter, no ignore pattern.
    expect(lint).not.toMatch(/--min-severity|--min-confidence|--persona|--config|-ignore |-config-file/);
    expect(testAll).toMatch(/^step "workflows: actionlint, zizmor"; +bash scripts\/lint-workflows\.sh$/m);
    expect(ciRun).toContain("bash scripts/lint-workflows.sh --install");
  });

  it("no finding is silenced in the workflows", () => {
    for (const f of files) expect(raw(f)).not.toMatch(/zizmor: ignore|actionlint/);
    expect(fs.existsSync(path.join(__dirname, "../.github/actionlint.yaml"))).toBe(false);
    expect(fs.existsSync(path.join(__dirname, "../.github/zizmor.yml"))).toBe(false);
    expect(fs.existsSync(path.join(__dirname, "../zizmor.yml"))).toBe(false);
  });
});
