/**
 * Delivery to a server the way teams run it, with the real Pulumi engine: both stacks' Docker host is
 * `ssh://` through a throwaway `sshd` (host key pinned), images go through a throwaway registry with
 * htpasswd authentication and TLS from a CA the engine trusts. Staging builds where pulumi runs and
 * pushes; the server pulls the digest; prod pulls that same digest with its own credentials. A wrong
 * password, a digest gone from the registry and a server whose host key is not pinned are each
 * refused before anything changes. Staging signs its image and prod's gate verifies it (cosign and
 * syft on PATH). Needs the Pulumi CLI, the Docker engine, the local base, proxy, sshd and registry
 * images and PostgreSQL's binaries; fails (never skips) without them.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProdOutputs, StackOutputs } from "../components/contract";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, dockerHostAddress, requireDockerEngine } from "../support/docker";
import { requirePulumiCli, run, scratchProject, type ScratchProject } from "../support/engine";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { LOCAL_REGISTRY_IMAGE, startRegistry, type Registry } from "../support/registry";
import { makeCosignKeys, type CosignKeys } from "../support/signingKeys";
import { initRegistryStacks, registryStackFile } from "../support/stacks";
import { LOCAL_SSHD_IMAGE, startSshd, type Sshd } from "../support/sshd";
import { freePort, httpRequest } from "../support/wait";

const MINUTE = 60_000;

let p: ScratchProject;
let sshd: Sshd;
let registry: Registry;
let pg: PostgresCluster;
let staging: Stack;
let prod: Stack;
let repository: string;
/** Staging signs with these; prod verifies with the public half. */
let keys: CosignKeys;
/** Every secret value the stacks hold; none may show up in clear text anywhere. */
const secrets: string[] = [];

function expectNoSecret(text: string, where: string): void {
  for (const value of secrets) expect(text.includes(value), `a secret value appears in ${where}`).toBe(false);
}

async function rawOutputs(stack: Stack): Promise<Record<string, unknown>> {
  return Object.fromEntries(Object.entries(await stack.outputs()).map(([k, v]) => [k, v.value]));
}

async function outputsOf(stack: Stack): Promise<StackOutputs> {
  return StackOutputs.parse(await rawOutputs(stack));
}

/** `pulumi <command> --stack <stack>` with --yes for updates; its exit code and everything it printed. */
async function pulumi(command: "up" | "preview", stack: string): Promise<{ code: number; text: string; ms: number }> {
  const started = Date.now();
  const res = await p.pulumi([command, "--stack", stack, ...(command === "up" ? ["--yes", "--skip-preview"] : [])]);
  return { code: res.code, text: res.stdout + res.stderr, ms: Date.now() - started };
}

/** The release container of a stack: its id and the image id it runs. */
async function release(stack: string): Promise<{ id: string; image: string }> {
  const { stdout } = await docker(["ps", "-a", "--filter", `name=^${p.project}-${stack}-app-`, "--format", "{{.ID}}"]);
  const ids = stdout.trim().split("\n").filter((l) => l !== "");
  expect(ids).toHaveLength(1);
  const [info] = JSON.parse((await docker(["container", "inspect", ids[0]!])).stdout) as { Id: string; Image: string }[];
  return { id: info!.Id, image: info!.Image };
}

/** The stack's settings for this server and this registry. */
function stackFile(stack: "staging" | "prod", hostPort: number): Record<string, unknown> {
  const extra = { "docker:host": sshd.dockerHost, "docker:sshOpts": sshd.sshOpts };
  return registryStackFile(stack, { hostPort, project: p.project, repository, registry, publicKey: keys.publicKey, extra });
}

beforeAll(async () => {
  await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_SSHD_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  p = scratchProject();
  repository = `${p.project}/backend`;
  const hostAddress = await dockerHostAddress();
  [sshd, registry, pg, keys] = await Promise.all([startSshd(), startRegistry({ address: hostAddress }), startPostgres({ alsoListenOn: hostAddress }), makeCosignKeys()]);
  secrets.push(registry.password, pg.password, keys.password, ...keys.privateKey.split("\n").filter((l) => l.length > 20));
  fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
  fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
  const databaseUrl = `postgresql://${pg.user}:${pg.password}@${hostAddress}:${pg.port}/${pg.database}`;
  const files = { staging: stackFile("staging", await freePort()), prod: stackFile("prod", await freePort()) };
  secrets.push(...(await initRegistryStacks(p, files, { databaseUrl: () => databaseUrl, registryPassword: registry.password, keys })));
  staging = await p.stack("staging");
  prod = await p.stack("prod");
}, 5 * MINUTE);

afterAll(async () => {
  for (const stack of [prod, staging]) await stack?.destroy().catch(() => undefined);
  p?.cleanup();
  await Promise.all([sshd?.stop(), registry?.stop(), pg?.stop()]);
}, 10 * MINUTE);

describe("delivery to a server over ssh://, through a registry", () => {
  it("staging: built where pulumi runs, pushed with authentication, pulled by the server by digest, proven ready", async () => {
    const up = await pulumi("up", "staging");
    expect(up.code, up.text).toBe(0);
    expectNoSecret(up.text, "the staging update's output");
    const outputs = await outputsOf(staging);
    const digest = outputs.imageDigest;
    expect(outputs.imageRef).toBe(`${registry.server}/${repository}@${digest}`);
    // The registry holds exactly that manifest, and it is what the build's tag points at.
    expect(await registry.manifestDigest(repository, digest)).toBe(digest);
    expect(await registry.manifestDigest(repository, "latest")).toBe(digest);
    expect(outputs.readiness).toMatchObject({ ready: true, imageDigest: digest });
    const running = await release("staging");
    const pulled = JSON.parse((await docker(["image", "inspect", "--format", "{{json .RepoDigests}}", running.image])).stdout) as string[];
    expect(pulled).toContain(outputs.imageRef);
    // The server publishes on its own loopback; here the server is this machine.
    expect((await httpRequest(`${outputs.url}/readyz`)).status).toBe(200);
    expectNoSecret(p.stateFile("staging"), "staging's state");
    expectNoSecret(JSON.stringify(outputs), "staging's outputs");
  }, 10 * MINUTE);

  it("prod: the gate's digest, pulled by the server with prod's own credentials, and nothing to change after", async () => {
    const up = await pulumi("up", "prod");
    expect(up.code, up.text).toBe(0);
    expectNoSecret(up.text, "the promotion's output");
    const [s, o] = [await outputsOf(staging), await outputsOf(prod)];
    expect(o.imageRef).toBe(s.imageRef);
    expect(ProdOutputs.parse(await rawOutputs(prod)).promotedFrom).toMatchObject({ imageDigest: s.imageDigest });
    const running = await release("prod");
    const pulled = JSON.parse((await docker(["image", "inspect", "--format", "{{json .RepoDigests}}", running.image])).stdout) as string[];
    expect(pulled).toContain(s.imageRef);
    expect((await httpRequest(`${o.url}/readyz`)).status).toBe(200);
    await prod.preview({ expectNoChanges: true });
    expectNoSecret(p.stateFile("prod"), "prod's state");
  }, 10 * MINUTE);

  it("the pull-request preview over ssh://: nothing to change, ALLOWED with the digest, and no credential in the documents or the comment", async () => {
    const files: string[] = [];
    for (const stack of ["staging", "prod"]) {
      const res = await p.pulumi(["preview", "--json", "--stack", stack]);
      expect(res.code, res.stderr).toBe(0);
      expect((JSON.parse(res.stdout) as { changeSummary?: Record<string, number> }).changeSummary).not.toHaveProperty("replace");
      expectNoSecret(res.stdout + res.stderr, `${stack}'s preview document`);
      const doc = path.join(p.dir, `${stack}-preview.json`);
      const config = path.join(p.dir, `${stack}-config.json`);
      fs.writeFileSync(doc, res.stdout);
      fs.writeFileSync(config, (await p.pulumi(["config", "--show-secrets", "--json", "--stack", stack])).stdout, { mode: 0o600 });
      files.push(`--stack=${stack}=${doc}`, "--secrets-file", config);
    }
    const res = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), ...files, "--dry-run"], { cwd: p.dir, env: p.env });
    expect(res.code, res.stderr).toBe(0);
    const s = await outputsOf(staging);
    expect(res.stdout).toContain(`**Promotion: ALLOWED** — digest \`${s.imageDigest}\``);
    expectNoSecret(res.stdout + res.stderr, "the pull-request comment");
  }, 10 * MINUTE);

  it("a wrong registry password stops prod before anything of it changes, naming the registry and the key", async () => {
    const before = { outputs: await outputsOf(prod), release: await release("prod") };
    const wrong = `${registry.password}-old`;
    secrets.push(wrong);
    await p.setSecret("prod", "registryPassword", wrong);
    try {
      const up = await pulumi("up", "prod");
      expect(up.code).not.toBe(0);
      expect(up.text).toContain("stack prod was not deployed (1 problem); nothing of it changed:");
      expect(up.text).toContain(`registry ${registry.server} refused user ${registry.username} with this password`);
      expect(up.text).toContain("fix: pulumi config set --stack prod --secret registryPassword");
      expect(up.text).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
      expectNoSecret(up.text, "the refused update's output");
      expect(await outputsOf(prod)).toEqual(before.outputs);
      expect(await release("prod")).toEqual(before.release);
      // Staging's own wrong password is refused before anything is built.
      await p.setSecret("staging", "registryPassword", wrong);
      const preview = await pulumi("preview", "staging");
      expect(preview.code).not.toBe(0);
      expect(preview.text).toContain("stack staging was not deployed (1 problem); nothing was built or changed:");
      expectNoSecret(preview.text, "the refused preview's output");
    } finally {
      await p.setSecret("prod", "registryPassword", registry.password);
      await p.setSecret("staging", "registryPassword", registry.password);
    }
  }, 10 * MINUTE);

  it("a server whose host key is not pinned, or changed, is refused before anything connects", async () => {
    const empty = path.join(p.dir, "empty_known_hosts");
    fs.writeFileSync(empty, "", { mode: 0o600 });
    const wrong = await sshd.wrongKnownHosts();
    const cases: [string, string][] = [
      [empty, "the server's host key is not pinned in known_hosts, so the connection was refused"],
      [wrong, "the server's host key does not match the one pinned in known_hosts"],
    ];
    // The one flag that names the known_hosts file, swapped for another file and back.
    const at = sshd.sshOpts.findIndex((o) => o.startsWith("UserKnownHostsFile="));
    expect(at).toBeGreaterThanOrEqual(0);
    try {
      for (const [file, expected] of cases) {
        await p.setConfig("staging", `docker:sshOpts[${at}]`, `UserKnownHostsFile=${file}`);
        const preview = await pulumi("preview", "staging");
        expect(preview.code).not.toBe(0);
        expect(preview.text).toContain("stack staging cannot reach its Docker engine (1 problem); nothing was changed:");
        expect(preview.text).toContain(`Docker host ${sshd.dockerHost}: ${expected}`);
        expect(preview.text).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
      }
    } finally {
      await p.setConfig("staging", `docker:sshOpts[${at}]`, sshd.sshOpts[at]!);
    }
    await staging.preview({ expectNoChanges: true });
  }, 10 * MINUTE);

  it("a digest gone from the registry fails prod clearly, saying how to get a new one", async () => {
    const before = await release("prod");
    const { imageDigest } = await outputsOf(prod);
    await registry.deleteManifest(repository, imageDigest);
    const up = await pulumi("up", "prod");
    expect(up.code).not.toBe(0);
    expect(up.text).toContain(`${registry.server}/${repository}@${imageDigest} is not in registry ${registry.server} any more`);
    expect(up.text).toContain("fix: deploy staging again");
    expect(await release("prod")).toEqual(before);
  }, 10 * MINUTE);

  it("destroy over ssh:// leaves no container, network or volume of either stack on the server", async () => {
    for (const stack of [prod, staging]) await stack.destroy();
    const left = (await docker(["ps", "-a", "--format", "{{.Names}}"])).stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`));
    const networks = (await docker(["network", "ls", "--format", "{{.Name}}"])).stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`));
    const volumes = (await docker(["volume", "ls", "--format", "{{.Name}}"])).stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`));
    expect([...left, ...networks, ...volumes]).toEqual([]);
  }, 10 * MINUTE);
});
