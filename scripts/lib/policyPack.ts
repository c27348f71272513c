/**
 * The CrossGuard policy pack (policy/) on every `pulumi up` and `pulumi preview` the helpers run:
 * `--policy-pack policy`, relative to the project directory where they run `pulumi`. The pack is a
 * package of its own; when its dependencies are missing (a fresh clone after `npm ci`), they are
 * installed first from its lock file, and said so.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** The pack's folder, relative to the project directory. */
export const POLICY_PACK = "policy";

/** `pulumi` arguments that run the pack; installs its dependencies first when they are missing. */
export function policyPackArgs(projectDir: string, say: (line: string) => void): string[] {
  const dir = path.join(projectDir, POLICY_PACK);
  if (fs.existsSync(path.join(dir, "package.json")) && !fs.existsSync(path.join(dir, "node_modules", "@pulumi", "policy"))) {
    say(`Installing the policy pack's dependencies: npm ci --prefix ${POLICY_PACK}`);
    execFileSync("npm", ["ci", "--prefix", dir, "--no-audit", "--no-fund", "--silent"], { stdio: ["ignore", "ignore", "inherit"] });
  }
  return ["--policy-pack", POLICY_PACK];
}
