/**
 * What prod runs is proven, with the real Pulumi engine, cosign and syft, through a throwaway
 * registry (TLS from a CA of its own, checked): staging signs the image it pushed and attests its
 * SBOM; prod's gate verifies both with the public key and promotes; signed by another key, an SBOM
 * altered after signing and an unsigned image are each refused before anything of prod changes, and
 * the fix the refusal names (`pulumi up --refresh` on staging) repairs the last two; a dependency bump in
 * `backend/uv.lock` shows up in the pull-request comment's dependency changes; the policy pack runs on
 * every update and preview and both stacks pass it; and no key or password is in clear text in state,
 * outputs, what pulumi printed, `docker inspect` or the comment. Needs the Pulumi CLI, the Docker
 * engine, the local base, proxy and registry images, PostgreSQL's binaries, cosign and syft; fails,
 * never skips, without them.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProdOutputs, StackOutputs } from "../components/contract";
import { publicKeyFingerprint } from "../components/supplyChain/keys";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, dockerHostAddress, requireDockerEngine } from "../support/docker";
import { requirePulumiCli, run, scratchProject, type ScratchProject } from "../support/engine";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { LOCAL_REGISTRY_IMAGE, startRegistry, type Registry } from "../support/registry";
import { makeCosignKeys, type CosignKeys } from "../support/signingKeys";
import { initRegistryStacks, registryStackFile } from "../support/stacks";
import { cosignTag, deleteSignature, tamperAttestation } from "../support/supplyChain";
import { freePort } from "../support/wait";

const MINUTE = 60_000;
/** What a passing pack prints in an update's or a preview's report. */
const PACK_PASSED = /✅ backend-delivery@v0\.1\.0/;

let p: ScratchProject;
let registry: Registry;
let pg: PostgresCluster;
let keys: CosignKeys;
let otherKeys: CosignKeys;
let staging: Stack;
let prod: Stack;
let repository: string;
/** Every secret value the stacks hold, and every text that must not contain one. */
const secrets: string[] = [];
const printed: string[] = [];

async function outputsOf(stack: Stack): Promise<StackOutputs & ProdOutputs> {
  const raw = Object.fromEntries(Object.entries(await stack.outputs()).map(([k, v]) => [k, v.value]));
  return ProdOutputs.parse(raw) as StackOutputs & ProdOutputs;
}

/** `pulumi <command> --stack <stack> --policy-pack policy`, as the workflows run it; what it printed is kept for the secret check. */
async function pulumi(command: "up" | "preview", stack: string, extra: string[] = []): Promise<{ code: number; text: string }> {
  const res = await p.pulumi([command, "--stack", stack, "--policy-pack", "policy", ...(command === "up" ? ["--yes", "--skip-preview"] : []), ...extra]);
  const text = res.stdout + res.stderr;
  printed.push(text);
  return { code: res.code, text };
}

/** Prod's release container: its id and the image it runs. */
async function release(): Promise<{ id: string; image: string }> {
  const { stdout } = await docker(["ps", "-a", "--filter", `name=^${p.project}-prod-app-`, "--format", "{{.ID}} {{.Image}}"]);
  const rows = stdout.trim().split("\n").filter((l) => l !== "");
  expect(rows).toHaveLength(1);
  const [id = "", image = ""] = rows[0]!.split(" ");
  return { id, image };
}

/** Runs `prodUp` expecting a refusal; prod's outputs and its release stay as they were. */
async function expectRefused(reasons: string[]): Promise<string> {
  const before = { outputs: await outputsOf(prod), release: await release() };
  const up = await pulumi("up", "prod");
  expect(up.code, up.text).not.toBe(0);
  expect(up.text).toMatch(/prod promotion from \S+ refused \(\d reasons?\); no prod resource was touched:/);
  for (const reason of reasons) expect(up.text).toContain(reason);
  expect(up.text).not.toMatch(/\n\s+at .+\(.+:\d+:\d+\)/);
  expect(await outputsOf(prod)).toEqual(before.outputs);
  expect(await release()).toEqual(before.release);
  return up.text;
}

function stackFile(stack: "staging" | "prod", hostPort: number): Record<string, unknown> {
  return registryStackFile(stack, { hostPort, project: p.project, repository, registry, publicKey: keys.publicKey });
}

beforeAll(async () => {
  await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  p = scratchProject();
  repository = `${p.project}/backend`;
  const hostAddress = await dockerHostAddress();
  [registry, pg, keys, otherKeys] = await Promise.all([startRegistry({ address: hostAddress }), startPostgres({ alsoListenOn: hostAddress }), makeCosignKeys(), makeCosignKeys()]);
  secrets.push(registry.password, pg.password, keys.password, ...keys.privateKey.split("\n").filter((l) => l.length > 20));
  fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
  fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
  const files = { staging: stackFile("staging", await freePort()), prod: stackFile("prod", await freePort()) };
  const databaseUrl = (stack: "staging" | "prod") => (stack === "prod" ? `postgresql://${pg.user}:${pg.password}@${hostAddress}:${pg.port}/${pg.database}` : "sqlite:////data/app.db");
  secrets.push(...(await initRegistryStacks(p, files, { databaseUrl, registryPassword: registry.password, keys })));
  staging = await p.stack("staging");
  prod = await p.stack("prod");
}, 5 * MINUTE);

afterAll(async () => {
  for (const stack of [prod, staging]) await stack?.destroy().catch(() => undefined);
  if (registry !== undefined) {
    const images = (await docker(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", `${registry.server}/${repository}`])).stdout.split("\n").filter((l) => l !== "");
    if (images.length > 0) await docker(["image", "rm", "--force", ...images], { allowFailure: true });
  }
  p?.cleanup();
  await Promise.all([registry?.stop(), pg?.stop()]);
}, 10 * MINUTE);

describe("a signed image with a signed SBOM, verified by prod's gate", () => {
  it("staging signs the pushed digest and attests its SBOM; the policy pack passes; a preview signs nothing", async () => {
    const up = await pulumi("up", "staging");
    expect(up.code, up.text).toBe(0);
    expect(up.text).toMatch(PACK_PASSED);
    const o = await outputsOf(staging);
    expect(o.imageRef).toBe(`${registry.server}/${repository}@${o.imageDigest}`);
    expect(o.supplyChain).toEqual({
      status: "signed",
      imageDigest: o.imageDigest,
      signatureDigest: await registry.manifestDigest(repository, cosignTag(o.imageDigest, "sig")),
      attestationDigest: await registry.manifestDigest(repository, cosignTag(o.imageDigest, "att")),
      sbom: { format: "spdx-json", packages: expect.any(Number) },
      publicKeyFingerprint: publicKeyFingerprint(keys.publicKey),
    });
    // The base image's Debian packages and the backend's Python packages.
    expect(o.supplyChain?.status === "signed" && o.supplyChain.sbom.packages).toBeGreaterThan(100);
    const preview = await pulumi("preview", "staging", ["--expect-no-changes"]);
    expect(preview.code, preview.text).toBe(0);
    expect(preview.text).toMatch(PACK_PASSED);
  }, 10 * MINUTE);

  it("prod verifies both with its public key, promotes the digest and records what it verified", async () => {
    const up = await pulumi("up", "prod");
    expect(up.code, up.text).toBe(0);
    expect(up.text).toMatch(PACK_PASSED);
    const [s, o] = [await outputsOf(staging), await outputsOf(prod)];
    expect(o.imageRef).toBe(s.imageRef);
    expect(o.supplyChain).toEqual({ ...s.supplyChain, status: "verified" });
    expect((await release()).image).not.toBe("");
  }, 10 * MINUTE);

  it("a dependency bump in backend/uv.lock: the pull-request comment lists what the new SBOM changes", async () => {
    const lock = await run("uv", ["lock", "--upgrade-package", "annotated-types==0.7.0"], { cwd: path.join(p.dir, "backend"), env: { ...process.env, UV_PYTHON_DOWNLOADS: "never" } });
    expect(lock.code, lock.stderr).toBe(0);
    const before = await outputsOf(prod);
    const up = await pulumi("up", "staging");
    expect(up.code, up.text).toBe(0);
    const candidate = await outputsOf(staging);
    expect(candidate.imageDigest).not.toBe(before.imageDigest);

    const preview = await p.pulumi(["preview", "--json", "--stack", "prod", "--policy-pack", "policy"]);
    printed.push(preview.stdout + preview.stderr);
    expect(preview.code, preview.stderr).toBe(0);
    const doc = path.join(p.dir, "prod-preview.json");
    const config = path.join(p.dir, "prod-config.json");
    fs.writeFileSync(doc, preview.stdout);
    fs.writeFileSync(config, (await p.pulumi(["config", "--show-secrets", "--json", "--stack", "prod"])).stdout, { mode: 0o600 });
    const comment = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), `--stack=prod=${doc}`, "--secrets-file", config, "--sbom-config", config, "--dry-run"], { cwd: p.dir, env: p.env });
    expect(comment.code, comment.stderr).toBe(0);
    printed.push(comment.stdout + comment.stderr);
    expect(comment.stdout).toContain(`**Promotion: ALLOWED** — digest \`${candidate.imageDigest}\``);
    expect(comment.stdout).toContain(`**Signature: verified** with key \`${publicKeyFingerprint(keys.publicKey).slice(0, 19)}\``);
    expect(comment.stdout).toContain(`**Dependency changes** of \`${candidate.imageRef}\` (from the SBOMs, against prod's \`${before.imageRef}\`): 0 added, 0 removed, 1 changed`);
    expect(comment.stdout).toContain("| `annotated-types` | Python | 0.8.0 | 0.7.0 |");
  }, 10 * MINUTE);

  it("signed by another key: refused, nothing of prod changed", async () => {
    // On stdin, as `npm run signing -- init` stores it: a PEM's first line would read as a flag.
    const setPublicKey = (pem: string) => p.pulumi(["config", "set", "--path", "promotion.signing.publicKey", "--stack", "prod"], { stdin: pem });
    expect((await setPublicKey(otherKeys.publicKey)).code).toBe(0);
    try {
      const text = await expectRefused(["signed by another key", "→ at supplyChain.signature", "→ at supplyChain.sbom", "npm run signing -- init --force"]);
      expect(text).toContain("refused (2 reasons)");
    } finally {
      expect((await setPublicKey(keys.publicKey)).code).toBe(0);
    }
  }, 10 * MINUTE);

  it("an SBOM attestation altered after signing: refused, nothing of prod changed", async () => {
    const { imageDigest } = await outputsOf(staging);
    await tamperAttestation(registry, repository, imageDigest, (statement) => {
      statement.predicate.packages.push({ name: "backdoor", SPDXID: "SPDXRef-Package-backdoor", versionInfo: "6.6.6" });
    });
    const text = await expectRefused([`the SBOM attestation of ${imageDigest} does not verify with promotion.signing.publicKey: changed after it was signed`, "→ at supplyChain.sbom"]);
    expect(text).toContain("refused (1 reason)");
  }, 10 * MINUTE);

  it("unsigned too: refused; the fix the refusal names, `pulumi up --refresh` on staging, signs and attests again, and prod takes it", async () => {
    const { imageDigest } = await outputsOf(staging);
    await deleteSignature(registry, repository, imageDigest);
    const text = await expectRefused([`the registry holds no signature for ${imageDigest}`, "→ at supplyChain.signature", `pulumi up --refresh --stack organization/${p.project}/staging`]);
    expect(text).toContain("refused (2 reasons)");
    const repair = await pulumi("up", "staging", ["--refresh"]);
    expect(repair.code, repair.text).toBe(0);
    const up = await pulumi("up", "prod");
    expect(up.code, up.text).toBe(0);
    expect((await outputsOf(prod)).supplyChain?.status).toBe("verified");
  }, 10 * MINUTE);

  it("no key or password in clear text: state, outputs, what pulumi printed, docker inspect, the comment", async () => {
    const containers = (await docker(["ps", "-a", "--filter", `name=^${p.project}-`, "--format", "{{.ID}}"])).stdout.split("\n").filter((l) => l !== "");
    expect(containers.length).toBeGreaterThanOrEqual(4);
    const inspected = (await docker(["container", "inspect", ...containers])).stdout;
    const texts: [string, string][] = [
      ["staging's state", p.stateFile("staging")],
      ["prod's state", p.stateFile("prod")],
      ["the outputs", JSON.stringify([await outputsOf(staging), await outputsOf(prod)])],
      ["docker inspect", inspected],
      ...printed.map((t, i) => [`printed output #${i}`, t] as [string, string]),
    ];
    // The release's own environment holds the backend's secrets by design (README, "Secrets"); the signing
    // key, its password and the registry's password are in no container at all.
    const signing = [keys.password, ...keys.privateKey.split("\n").filter((l) => l.length > 20), registry.password];
    for (const [where, text] of texts) {
      for (const value of where === "docker inspect" ? signing : secrets) expect(text.includes(value), `a secret value appears in ${where}`).toBe(false);
    }
    // The signing key is in staging's state only as a secret (encrypted) input.
    expect(p.stateFile("staging")).not.toContain("ENCRYPTED SIGSTORE PRIVATE KEY");
  }, 10 * MINUTE);
});
