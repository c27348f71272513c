/**
 * The policy pack (policy/) in a real `pulumi preview`: the Node.js language host runs it with the
 * file backend and no Pulumi Cloud. A program whose container is privileged (and hardened in every
 * other way) is refused by exactly that rule, with the message that names the resource, the property
 * and the fix; the same container without `privileged` passes. That both stacks of this project pass
 * is proven where they are deployed with the pack (test/supplyChain.e2e.test.ts, and `npm run up` in
 * test/delivery.e2e.test.ts). Needs the Pulumi CLI and the pack's dependencies (`npm ci --prefix
 * policy`); fails, never skips, without them.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REPO, requirePulumiCli, run } from "../support/engine";

let dir: string;
let env: NodeJS.ProcessEnv;

/** A one-container program; `privileged` is the only thing wrong with it when set. */
function writeProgram(privileged: boolean): void {
  fs.writeFileSync(
    path.join(dir, "index.ts"),
    [
      'import * as docker from "@pulumi/docker";',
      'new docker.Container("worker", {',
      '  image: "local/caddy:2-bookworm",',
      `  privileged: ${privileged},`,
      '  user: "10001:10001",',
      "  readOnly: true,",
      '  capabilities: { drops: ["ALL"] },',
      '  securityOpts: ["no-new-privileges:true"],',
      "  memory: 128,",
      '  ulimits: [{ name: "nproc", soft: 64, hard: 64 }],',
      "});",
      "",
    ].join("\n"),
  );
}

const preview = () => run("pulumi", ["preview", "--stack", "dev", "--non-interactive", "--policy-pack", path.join(REPO, "policy")], { cwd: dir, env });

beforeAll(async () => {
  await requirePulumiCli();
  if (!fs.existsSync(path.join(REPO, "policy", "node_modules", "@pulumi", "policy"))) throw new Error("the policy pack's dependencies are missing: npm ci --prefix policy");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "policy-e2e-"));
  const home = path.join(dir, ".pulumi-home");
  fs.mkdirSync(home);
  const plugins = path.join(process.env.PULUMI_HOME ?? path.join(os.homedir(), ".pulumi"), "plugins");
  fs.mkdirSync(plugins, { recursive: true });
  fs.symlinkSync(plugins, path.join(home, "plugins"));
  fs.symlinkSync(path.join(REPO, "node_modules"), path.join(dir, "node_modules"));
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), `name: policy-e2e-${randomBytes(3).toString("hex")}\nruntime: nodejs\n`);
  fs.writeFileSync(path.join(dir, "package.json"), '{ "name": "policy-e2e", "main": "index.ts" }\n');
  env = { ...process.env, PULUMI_HOME: home, PULUMI_BACKEND_URL: `file://${path.join(dir, "state")}`, PULUMI_CONFIG_PASSPHRASE: "policy-e2e", PULUMI_SKIP_UPDATE_CHECK: "true", NO_COLOR: "1" };
  fs.mkdirSync(path.join(dir, "state"));
  const init = await run("pulumi", ["stack", "init", "dev", "--non-interactive"], { cwd: dir, env });
  expect(init.code, init.stderr).toBe(0);
}, 120_000);

afterAll(() => {
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
});

describe("the policy pack in a real pulumi preview", () => {
  it("refuses a privileged container, naming the resource, the property and the fix, and nothing else", async () => {
    writeProgram(true);
    const res = await preview();
    const text = res.stdout + res.stderr;
    expect(res.code, text).not.toBe(0);
    expect(text).toContain("[mandatory]  not-privileged  (docker:index:Container: worker)");
    expect(text).toContain("container worker: `privileged` is true: the workload gets every device and capability of the host; fix: remove `privileged`");
    expect(text.match(/\[mandatory\]/g)).toHaveLength(1);
  }, 180_000);

  it("lets the same container through without privileged", async () => {
    writeProgram(false);
    const res = await preview();
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toMatch(/✅ backend-delivery@v0\.1\.0/);
  }, 180_000);
});
