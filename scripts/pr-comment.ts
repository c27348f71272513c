/**
 * Posts (or updates) the pull-request comment that shows every stack's `pulumi preview`.
 *
 *   npx tsx scripts/pr-comment.ts --stack staging=staging.json --stack prod=prod.json \
 *     [--exit-code prod=255] [--log prod=prod.log] [--secrets-file staging-config.json ...] \
 *     [--promotion-stack prod] [--sbom-config prod-config.json] [--pr 12] [--repo owner/name] [--commit SHA] [--dry-run]
 *
 * The token comes from GITHUB_TOKEN, never from argv. Secret values to redact come from files
 * written by `pulumi config --show-secrets --json` (current and base-branch stack files); delete
 * them after the run. `--sbom-config` is prod's `pulumi config --show-secrets --json`: with its
 * registry, password and public key the comment reads the verified SBOMs of the image the promotion
 * would run and of the one prod runs now, and lists what changed (cosign on PATH). Exit codes: 0
 * posted, 1 GitHub refused, 2 bad command line or input.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { secretsFromConfigJson } from "./lib/configSecrets";
import { createOctokit, upsertPreviewComments } from "./lib/githubComment";
import { readSbom } from "../components/supplyChain/verify";
import { dependencyChanges, sbomSourceFromConfigJson, type SbomSource } from "./lib/preview/dependencies";
import { renderPreviewComment } from "./lib/preview/render";
import { projectDir } from "./lib/pulumiCli";
import { summarize, type StackPreview } from "./lib/preview/stackSummary";

/** Every value the run holds that must never reach the comment or stderr; filled as they are read. */
const secrets: string[] = [];

/** The project's name (its config namespace), from the Pulumi.yaml beside this script. */
function projectName(): string {
  const doc = parseYaml(fs.readFileSync(path.join(projectDir(), "Pulumi.yaml"), "utf8")) as { name?: unknown };
  if (typeof doc.name !== "string") throw usage(`no project name in ${path.join(projectDir(), "Pulumi.yaml")}`);
  return doc.name;
}

function usage(message: string): CliError {
  return new CliError(message, ExitCode.usage);
}

function pairs(values: string[] | undefined, flag: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const v of values ?? []) {
    const at = v.indexOf("=");
    if (at <= 0 || at === v.length - 1) throw usage(`${flag} takes NAME=VALUE, got '${v}'`);
    map.set(v.slice(0, at), v.slice(at + 1));
  }
  return map;
}

function read(file: string, what: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (e) {
    throw usage(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

interface PullRequestEvent {
  pull_request?: { number?: number; head?: { sha?: string } };
}

function event(): PullRequestEvent {
  const file = process.env.GITHUB_EVENT_PATH;
  if (!file || !fs.existsSync(file)) return {};
  return JSON.parse(fs.readFileSync(file, "utf8")) as PullRequestEvent;
}

const OPTIONS = {
  stack: { type: "string", multiple: true },
  "exit-code": { type: "string", multiple: true },
  log: { type: "string", multiple: true },
  "secrets-file": { type: "string", multiple: true },
  "promotion-stack": { type: "string", default: "prod" },
  "sbom-config": { type: "string" },
  pr: { type: "string" },
  repo: { type: "string" },
  commit: { type: "string" },
  "dry-run": { type: "boolean", default: false },
} as const;

function parseCommandLine(argv: string[]) {
  try {
    return parseArgs({ args: argv, options: OPTIONS, strict: true }).values;
  } catch (e) {
    // node:util's own message names the unknown or malformed option.
    if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) throw usage((e as Error).message);
    throw e;
  }
}

async function main(): Promise<number> {
  // What the workflow itself holds must never be posted nor printed, even in a usage error.
  for (const name of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_BACKEND_URL", "GITHUB_TOKEN"]) {
    const v = process.env[name];
    if (v) secrets.push(v);
  }
  const values = parseCommandLine(process.argv.slice(2));
  const stacks = pairs(values.stack, "--stack");
  if (stacks.size === 0) throw usage("name at least one preview: --stack <name>=<pulumi preview --json output>");
  const exitCodes = pairs(values["exit-code"], "--exit-code");
  const logs = pairs(values.log, "--log");
  for (const name of [...exitCodes.keys(), ...logs.keys()]) {
    if (!stacks.has(name)) throw usage(`'${name}' has an exit code or log but no --stack ${name}=<file>`);
  }

  const previews: StackPreview[] = [...stacks].map(([stack, file]) => {
    const code = exitCodes.get(stack);
    if (code !== undefined && !/^\d+$/.test(code)) throw usage(`--exit-code ${stack}=${code}: not a number`);
    // A missing preview file is itself a failed preview: the comment must say so.
    const json = fs.existsSync(file) ? read(file, "preview") : "";
    const logFile = logs.get(stack);
    return {
      stack,
      json,
      ...(code === undefined ? {} : { exitCode: Number(code) }),
      ...(logFile !== undefined && fs.existsSync(logFile) ? { log: read(logFile, "log") } : {}),
      promotion: stack === values["promotion-stack"],
    };
  });

  for (const file of values["secrets-file"] ?? []) {
    try {
      secrets.push(...secretsFromConfigJson(read(file, "secrets file"), file));
    } catch (e) {
      throw usage((e as Error).message);
    }
  }

  // The promotion's dependency changes, from the registry, with prod's own credentials and key.
  let source: SbomSource | undefined;
  const sbomConfig = values["sbom-config"];
  if (sbomConfig !== undefined) {
    try {
      source = sbomSourceFromConfigJson(read(sbomConfig, "SBOM config"), projectName());
    } catch (e) {
      throw usage(`--sbom-config ${sbomConfig}: ${(e as Error).message}`);
    }
    if (source !== undefined) secrets.push(source.login.password);
  }
  const promoted = previews.find((p) => p.promotion === true);
  const dependencies = promoted === undefined ? undefined : await dependencyChanges(summarize(promoted).verdict, source, (ref, s) => readSbom({ imageRef: ref, login: s.login }, s.publicKey));

  const ev = event();
  const commit = values.commit ?? ev.pull_request?.head?.sha ?? process.env.GITHUB_SHA;
  const { GITHUB_SERVER_URL: server, GITHUB_REPOSITORY: repository, GITHUB_RUN_ID: runId } = process.env;
  const parts = renderPreviewComment(previews, {
    secrets,
    ...(commit ? { commit: commit.slice(0, 12) } : {}),
    ...(server && repository && runId ? { runUrl: `${server}/${repository}/actions/runs/${runId}` } : {}),
    ...(dependencies === undefined ? {} : { dependencies }),
  });

  if (values["dry-run"]) {
    process.stdout.write(parts.join("\n---\n"));
    return ExitCode.ok;
  }
  const repo = values.repo ?? repository;
  const [owner, name, ...rest] = (repo ?? "").split("/");
  if (!owner || !name || rest.length > 0) throw usage("name the repository: --repo owner/name (or set GITHUB_REPOSITORY)");
  const prNumber = values.pr !== undefined ? Number(values.pr) : ev.pull_request?.number;
  if (prNumber === undefined || !Number.isInteger(prNumber) || prNumber <= 0) {
    throw usage("name the pull request: --pr <number> (or run on a pull_request event)");
  }
  const token = process.env.GITHUB_TOKEN;
  if (!token) throw usage("set GITHUB_TOKEN (a token that may write pull-request comments)");

  const octokit = createOctokit(token, process.env.GITHUB_API_URL);
  try {
    const r = await upsertPreviewComments(octokit, { owner, repo: name, issueNumber: prNumber }, parts);
    console.log(
      `preview comment on ${owner}/${name}#${prNumber}: ${parts.length} part(s); ` +
        `created ${r.created.length}, updated ${r.updated.length}, unchanged ${r.unchanged.length}, deleted ${r.deleted.length}`,
    );
    return ExitCode.ok;
  } catch (e) {
    // Octokit's message names the status and endpoint; it never carries the token.
    const status = (e as { status?: number }).status;
    throw new CliError(
      `GitHub refused the preview comment${status ? ` (HTTP ${status})` : ""}: ${(e as Error).message}`,
      ExitCode.githubRefused,
    );
  }
}

runMain(main, () => secrets);
