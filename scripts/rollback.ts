/**
 * One-command rollback: `npm run rollback -- <stack> [-- <pulumi up arguments>]`.
 *
 * Reads the stack's `previousImageRef` (the last different image it ran) and runs `pulumi up` with
 * that image through the same zero-downtime release path: the release starts, is proven ready, the
 * proxy switches, the current release drains. Nothing is built, and prod needs no fresh staging
 * check: the image already ran there. The stack then records `rollback = { fromImageRef, at }`, and
 * its `previousImageRef` names the release rolled back from, so a second rollback goes forward again.
 *
 * Exit codes: 0 rolled back; 2 bad command line; 3 refused (no backend, no such stack, nothing to
 * roll back to); 1 `pulumi up` failed (its own message was shown; the release that served still does).
 */
import { ImageRef } from "../components/contract";
import { ROLLBACK_ENV } from "../components/release/history";
import { CliError, ExitCode, runMain } from "./lib/cli";
import { parseUpArgs } from "./lib/cliArgs";
import { policyPackArgs } from "./lib/policyPack";
import { projectDir, pulumiFailure, stackExists } from "./lib/pulumiCli";
import { describeSession, openSession } from "./lib/session";

const USAGE = "Usage: npm run rollback -- <stack> [-- <extra pulumi up arguments>]   e.g. npm run rollback -- prod -- --yes";

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

async function main(): Promise<number> {
  const parsed = parseUpArgs(process.argv.slice(2));
  if (!parsed.ok) throw new CliError(parsed.error.replace(/Usage: .*$/m, USAGE), ExitCode.usage);
  const { stack, extra } = parsed.value;

  const dir = projectDir();
  const session = await openSession(dir, process.env, false);
  const { cli } = session;
  for (const line of describeSession(session, dir)) say(line);
  if (!(await stackExists(cli, stack))) {
    throw new CliError(`Stack ${stack} does not exist in this backend; there is nothing to roll back.`, ExitCode.refused);
  }

  const res = await cli.capture(["stack", "output", "--json", "--stack", stack, "--non-interactive"]);
  if (res.code !== 0) throw pulumiFailure(`pulumi stack output --stack ${stack}`, res);
  let outputs: Record<string, unknown>;
  try {
    outputs = JSON.parse(res.stdout) as Record<string, unknown>;
  } catch {
    throw new CliError(`\`pulumi stack output --json\` printed something that is not JSON.`, ExitCode.pulumiFailed);
  }
  const current = ImageRef.safeParse(outputs.imageRef);
  const target = ImageRef.safeParse(outputs.previousImageRef);
  if (!target.success) {
    throw new CliError(
      `Stack ${stack} has no earlier release to roll back to: its outputs name no previousImageRef ` +
        "(it has run one image so far). Nothing was changed.",
      ExitCode.refused,
    );
  }

  say(`Rolling stack ${stack} back from ${current.success ? current.data : "(unknown)"} to ${target.data}.`);
  const policy = policyPackArgs(dir, say);
  say(`Running: pulumi up --stack ${stack} ${policy.join(" ")}${extra.length > 0 ? ` ${extra.join(" ")}` : ""}`);
  return cli.withEnv({ [ROLLBACK_ENV]: target.data }).interactive(["up", "--stack", stack, ...policy, ...extra]);
}

runMain(main);
