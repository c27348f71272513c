/**
 * Local quick start: `npm run up -- <stack> [-- <pulumi up arguments>]`.
 *
 * Uses the project-local file state backend (`.pulumi-state/`) unless you already use a backend of
 * your own, keeps a generated passphrase there, creates the stack when it is missing, gives a
 * non-prod stack the plain settings it lacks (its role, a free host port) and unset secrets local
 * defaults (and says so), then runs `pulumi up` with the project's policy pack (policy/). Secret values travel to `pulumi` on
 * stdin only and are never printed. A prod stack never gets invented secrets.
 */
import { CliError, ExitCode, runMain } from "./lib/cli";
import { parseUpArgs } from "./lib/cliArgs";
import { HOST_PORT_RANGE, chooseHostPort } from "./lib/hostPort";
import { policyPackArgs } from "./lib/policyPack";
import { configState, projectDir, pulumiFailure, setSecret, stackExists } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";
import {
  REQUIRED_SECRETS,
  type RequiredSecret,
  nameSaysProduction,
  unsetProductionRole,
  localDefault,
  prodRefusal,
  secretPath,
  setSecretCommands,
} from "./lib/stackSecrets";

/** Values generated during this run; every line printed is checked against them. */
const generated: string[] = [];

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<number> {
  const parsed = parseUpArgs(process.argv.slice(2));
  if (!parsed.ok) throw new CliError(parsed.error, ExitCode.usage);
  const { stack, extra } = parsed.value;

  const dir = projectDir();
  const session = await openSession(dir, process.env, true);
  const { cli } = session;
  for (const line of describeSession(session, dir)) say(line);

  if (!(await stackExists(cli, stack))) {
    const res = await cli.capture(["stack", "init", stack, "--non-interactive"]);
    if (res.code !== 0) throw pulumiFailure(`pulumi stack init ${stack}`, res);
    say(`Created stack ${stack}.`);
  }

  // The role is `environment`, as the program decides it; unset, it becomes staging, never by guess prod.
  const env = await configState(cli, stack, "environment", false);
  const prod = env.set && !env.secret && env.value === "prod";
  if (!env.set) {
    if (nameSaysProduction(stack)) throw new CliError(unsetProductionRole(stack), ExitCode.refused);
    const res = await cli.capture(["config", "set", "environment", "staging", "--stack", stack, "--non-interactive"]);
    if (res.code !== 0) throw pulumiFailure("pulumi config set environment staging", res);
    say(`environment was unset: set it to staging.`);
  }

  if (!prod && !(await configState(cli, stack, "service.hostPort", true)).set) {
    const port = await chooseHostPort(dir);
    if (port === undefined) {
      throw new CliError(
        `service.hostPort of stack ${stack} is unset and no port in ${HOST_PORT_RANGE.first}-${HOST_PORT_RANGE.last} is free. ` +
          `Choose one: pulumi config set --stack ${stack} --path service.hostPort <port>`,
        ExitCode.refused,
      );
    }
    const res = await cli.capture(["config", "set", "--path", "service.hostPort", String(port), "--stack", stack, "--non-interactive"]);
    if (res.code !== 0) throw pulumiFailure("pulumi config set --path service.hostPort", res);
    say(`service.hostPort was unset: set it to ${port}, free on 127.0.0.1 and used by no other stack file of this project.`);
  }

  const missing: RequiredSecret[] = [];
  const plaintext: string[] = [];
  for (const name of REQUIRED_SECRETS) {
    const state = await configState(cli, stack, secretPath(name), true);
    if (!state.set) missing.push(name);
    else if (!state.secret) plaintext.push(name);
  }

  if (prod && session.backend.kind === "project-local") {
    // Allowed so promotion can be tried end to end on one machine; the design keeps real prod off it.
    say(
      `Note: ${stack} is a production stack on the project-local state backend. That suits trying promotion ` +
        "locally; a real production stack belongs on a shared backend (set PULUMI_BACKEND_URL or pulumi login).",
    );
  }
  if (prod && (missing.length > 0 || plaintext.length > 0)) {
    throw new CliError(prodRefusal(stack, missing, plaintext), ExitCode.refused);
  }
  if (plaintext.length > 0) {
    // Overwriting would lose a value someone chose; encrypting it is their call.
    const lines = [`${plaintext.map(secretPath).join(", ")} of stack ${stack} is stored in plain text. Store it encrypted:`];
    for (const name of plaintext) for (const cmd of setSecretCommands(stack, name)) lines.push(`  ${cmd}`);
    throw new CliError(lines.join("\n"), ExitCode.refused);
  }

  for (const name of missing) {
    const { value, description } = localDefault(name);
    generated.push(value);
    await setSecret(cli, stack, secretPath(name), value);
    say(
      `${secretPath(name)} was unset: set it to a local default, ${description}` +
        `${name === "DATABASE_URL" ? ` (${value})` : ""}, stored encrypted. Local use only.`,
    );
  }

  const policy = policyPackArgs(dir, say);
  say(`Running: pulumi up --stack ${stack} ${policy.join(" ")}${extra.length > 0 ? ` ${extra.join(" ")}` : ""}`);
  return cli.interactive(["up", "--stack", stack, ...policy, ...extra]);
}

runMain(main, () => generated);
