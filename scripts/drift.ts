/**
 * Drift check: `npm run drift -- <stack> [--json] [--github [--repo owner/name]]`.
 *
 * Runs `pulumi preview --refresh --expect-no-changes --json` for the stack, with the project's policy
 * pack, the backend and the passphrase `npm run up` would use: the refresh reads every resource back from the Docker host (a
 * container removed or changed by hand shows), the preview says what `pulumi up` would change. It
 * changes nothing on the servers; it records the outcome as the stack tag `backend-delivery:drift`
 * (read by `npm run status`). With `--github` it also keeps the stack's one drift issue: opened or
 * edited on drift, closed when the drift is gone (GITHUB_TOKEN, GITHUB_REPOSITORY or --repo,
 * GITHUB_API_URL). Everything printed or posted is redacted with the stack's secret values.
 *
 * Exit codes: 0 no drift; 1 drift (what differs is listed); 2 could not check (bad command line,
 * no such stack, the preview failed, or GitHub refused the report).
 */
import { parseArgs } from "node:util";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { secretsFromConfigJson } from "./lib/configSecrets";
import { DRIFT_TAG, changeLines, driftRecord, readDriftCheck, type DriftResult } from "./lib/drift";
import { createOctokit } from "./lib/githubComment";
import { syncDriftIssue } from "./lib/githubIssue";
import { policyPackArgs } from "./lib/policyPack";
import { projectDir, stackExists } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";

const USAGE = "Usage: npm run drift -- <stack> [--json] [--github [--repo owner/name]]   e.g. npm run drift -- prod";

/** Every value that must never be printed; filled as they are read. */
const secrets: string[] = [];

function fail(message: string): CliError {
  return new CliError(message, ExitCode.notChecked);
}

function parseCommandLine(argv: string[]) {
  try {
    const { values, positionals } = parseArgs({
      args: argv[0] === "--" ? argv.slice(1) : argv,
      options: { json: { type: "boolean", default: false }, github: { type: "boolean", default: false }, repo: { type: "string" } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1 || !/^([A-Za-z0-9_.-]+\/){0,2}[A-Za-z0-9_.-]+$/.test(positionals[0] ?? "")) {
      throw fail(`Name exactly one stack.\n${USAGE}`);
    }
    if (values.repo !== undefined && !values.github) throw fail(`--repo only goes with --github.\n${USAGE}`);
    return { stack: positionals[0] as string, ...values };
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) throw fail(`${(e as Error).message}\n${USAGE}`);
    throw e;
  }
}

function print(result: DriftResult, asJson: boolean): void {
  if (asJson) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const say = (line: string) => process.stdout.write(`${line}\n`);
  if (result.status === "none") say(`No drift: stack ${result.stack} is as its Pulumi state records it and as the program declares it.`);
  if (result.status === "drift") {
    say(`Drift: stack ${result.stack} differs in ${result.changes.length} resource(s); \`pulumi up --stack ${result.stack}\` would:`);
    for (const line of changeLines(result)) say(`  ${line}`);
  }
  if (result.status === "unknown") {
    say(`Could not check stack ${result.stack} for drift:`);
    for (const e of result.errors) say(e.replace(/^/gm, "  "));
  }
}

async function main(): Promise<number> {
  const args = parseCommandLine(process.argv.slice(2));
  for (const name of ["PULUMI_CONFIG_PASSPHRASE", "GITHUB_TOKEN"]) {
    const v = process.env[name];
    if (v) secrets.push(v);
  }
  const dir = projectDir();
  const session = await openSession(dir, process.env, false).catch((e: unknown) => {
    throw e instanceof CliError ? fail(e.message) : e;
  });
  const { cli } = session;
  // Status lines go to stderr, so that --json leaves stdout to the result.
  for (const line of describeSession(session, dir)) process.stderr.write(`${line}\n`);
  if (!(await stackExists(cli, args.stack))) throw fail(`Stack ${args.stack} does not exist in this backend; there is nothing to check.`);

  // The values to redact: pulumi decrypts them into this process only.
  const config = await cli.capture(["config", "--show-secrets", "--json", "--stack", args.stack, "--non-interactive"]);
  if (config.code !== 0) throw fail(`\`pulumi config --stack ${args.stack}\` failed (exit ${config.code}); the check needs the stack's passphrase.`);
  secrets.push(...secretsFromConfigJson(config.stdout, "pulumi config --show-secrets --json"));

  process.stderr.write(`Checking stack ${args.stack}: pulumi preview --refresh --expect-no-changes ...\n`);
  const policy = policyPackArgs(dir, (line) => process.stderr.write(`${line}\n`));
  const res = await cli.capture(["preview", "--refresh", "--expect-no-changes", "--json", "--stack", args.stack, "--non-interactive", ...policy]);
  const result = readDriftCheck({ stack: args.stack, json: res.stdout, exitCode: res.code, log: res.stderr }, new Date(), secrets);
  print(result, args.json);

  // Kept in the backend beside the stack, so a check made by CI is seen by `npm run status` anywhere.
  const tagged = await cli.capture(["stack", "tag", "set", DRIFT_TAG, driftRecord(result), "--stack", args.stack, "--non-interactive"]);
  if (tagged.code !== 0) process.stderr.write(`warning: could not record the check as stack tag ${DRIFT_TAG} (exit ${tagged.code}).\n`);

  if (args.github) {
    const repository = args.repo ?? process.env.GITHUB_REPOSITORY ?? "";
    const [owner, repo, ...rest] = repository.split("/");
    if (!owner || !repo || rest.length > 0) throw fail("name the repository: --repo owner/name (or set GITHUB_REPOSITORY)");
    const token = process.env.GITHUB_TOKEN;
    if (!token) throw fail("set GITHUB_TOKEN (a token that may write issues) for --github");
    const { GITHUB_SERVER_URL: server, GITHUB_RUN_ID: runId, GITHUB_SHA: sha } = process.env;
    const context = {
      ...(server && runId ? { runUrl: `${server}/${repository}/actions/runs/${runId}` } : {}),
      ...(sha ? { commit: sha.slice(0, 12) } : {}),
    };
    try {
      const sync = await syncDriftIssue(createOctokit(token, process.env.GITHUB_API_URL), { owner, repo }, result, context, secrets);
      const dupes = sync.closedDuplicates.length > 0 ? `; closed duplicates ${sync.closedDuplicates.map((n) => `#${n}`).join(", ")}` : "";
      process.stderr.write(`drift issue of ${args.stack} on ${repository}: ${sync.action}${sync.number === undefined ? "" : ` #${sync.number}`}${dupes}\n`);
    } catch (e) {
      const status = (e as { status?: number }).status;
      throw fail(`GitHub refused the drift report${status ? ` (HTTP ${status})` : ""}: ${(e as Error).message}`);
    }
  }
  return result.status === "none" ? ExitCode.ok : result.status === "drift" ? ExitCode.drift : ExitCode.notChecked;
}

// Whatever goes wrong is "could not check" (2), never a false "drift" (1).
runMain(
  () =>
    main().catch((e: unknown) => {
      throw e instanceof CliError && e.exitCode === ExitCode.notChecked ? e : fail(e instanceof CliError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e));
    }),
  () => secrets,
);
