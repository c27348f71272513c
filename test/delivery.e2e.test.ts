/**
 * The whole delivery run by the real Pulumi engine against the real Docker engine: the quick start
 * from nothing, idempotence, promotion to prod (which reaches a throwaway PostgreSQL), rotation, a
 * release the backend refuses at start, refused promotions from real staging states, the preview
 * comment from real `pulumi preview --json` documents, and destroy. The scenarios share two stacks
 * and run in order. Needs the Pulumi CLI, the Docker engine, the local base image and PostgreSQL's
 * binaries; fails (never skips) without them.
 *
 * `CAPTURE_FIXTURES=1` also writes the preview documents it sees, secrets redacted, as the unit
 * tests' fixtures (test/fixtures/preview/).
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import type { OutputMap, Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StackOutputs } from "../components/contract";
import { readVerdict } from "../components/promotion/reasons";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, dockerHostAddress, firstExitOf, namedAfter, removeNamedAfter, requireDockerEngine } from "../support/docker";
import { fixtureText, requirePulumiCli, run, scratchProject, type ScratchProject } from "../support/engine";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { underLoad } from "../support/underLoad";
import { freePort, httpRequest } from "../support/wait";

const MINUTE = 60_000;
const CAPTURE = process.env.CAPTURE_FIXTURES === "1";

let p: ScratchProject;
let pg: PostgresCluster;
let staging: Stack;
let prod: Stack;
let stagingPort: number;
let prodPort: number;
/** Where containers reach this host (and so the test's PostgreSQL). */
let hostAddress: string;
/** Every secret value the stacks ever held; none may show up in clear text anywhere. */
const secrets: string[] = [];

/** Stack outputs as plain values (the Automation API wraps each in `{ value, secret }`). */
function plain(outputs: OutputMap): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.value]));
}

async function outputsOf(stack: Stack): Promise<Record<string, unknown>> {
  return plain(await stack.outputs());
}

/** The containers, networks and volumes of this project (all named after it). */
const leftovers = () => namedAfter(`${p.project}-`);

/** A release container as the engine reports it. */
interface ReleaseContainer {
  Id: string;
  Name: string;
  Created: string;
  Config: { Env: string[] };
  State: { Status: string };
}

/** The release containers of a stack (running or not), oldest first. */
async function releaseContainers(stack: string): Promise<ReleaseContainer[]> {
  const { stdout } = await docker(["ps", "-a", "--filter", `name=^${p.project}-${stack}-app-`, "--format", "{{.ID}}"]);
  const ids = stdout.trim().split("\n").filter((l) => l !== "");
  if (ids.length === 0) return [];
  const all = JSON.parse((await docker(["container", "inspect", ...ids])).stdout) as ReleaseContainer[];
  return all.sort((a, b) => Date.parse(a.Created) - Date.parse(b.Created));
}

/** The one release container of a stack after a successful update: no earlier release is left. */
async function appContainer(stack: string): Promise<ReleaseContainer> {
  const releases = await releaseContainers(stack);
  expect(releases.map((r) => r.Name)).toHaveLength(1);
  return releases[0]!;
}

/** Which release answers at the stack's URL (its container's short id, from `/version`). */
async function servingRelease(url: string): Promise<string> {
  return (JSON.parse((await httpRequest(`${url}/version`)).body) as { release: string }).release;
}

/** Fails when any secret value appears in the text. */
function expectNoSecret(text: string, where: string): void {
  for (const value of secrets) expect(text.includes(value), `a secret value appears in ${where}`).toBe(false);
}

/** `pulumi preview --json` of a stack: the document, its exit code and its stderr. */
async function previewJson(stack: string, name: string): Promise<{ file: string; code: number; log: string; doc: Record<string, unknown> }> {
  const res = await p.pulumi(["preview", "--json", "--stack", stack]);
  const file = path.join(p.dir, `${name}.json`);
  fs.writeFileSync(file, res.stdout);
  fs.writeFileSync(path.join(p.dir, `${name}.log`), res.stderr);
  if (CAPTURE) fs.writeFileSync(path.join(__dirname, "fixtures", "preview", `${name}.json`), fixtureText(res.stdout, p, secrets));
  return { file, code: res.code, log: res.stderr, doc: JSON.parse(res.stdout) as Record<string, unknown> };
}

beforeAll(async () => {
  await requirePulumiCli();
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await requireDockerEngine(LOCAL_PROXY_IMAGE);
  p = scratchProject({ withStackFiles: true });
  [stagingPort, prodPort] = [await freePort(), await freePort()];
  // The repository's stack files, with free ports and, where nothing can be pulled, the local base.
  p.writeStackFile("staging", {
    environment: "staging",
    service: { hostPort: stagingPort, env: { LOG_LEVEL: "INFO" } },
    image: { baseImage: LOCAL_PYTHON_BASE, name: p.project },
    proxy: { image: LOCAL_PROXY_IMAGE },
  });
  p.writeStackFile("prod", {
    environment: "prod",
    service: { hostPort: prodPort, env: { LOG_LEVEL: "WARNING" } },
    image: { name: p.project },
    // A prod stack must choose how TLS ends: in front, here, so its proxy serves plain HTTP as before.
    proxy: { image: LOCAL_PROXY_IMAGE, tls: { mode: "upstream" } },
    promotion: { fromStack: `organization/${p.project}/staging`, maxAgeHours: 24 },
  });
  hostAddress = await dockerHostAddress();
  pg = await startPostgres({ alsoListenOn: hostAddress });
  secrets.push(pg.password);
}, 5 * MINUTE);

afterAll(async () => {
  // Whatever a failed scenario left behind: destroy both stacks, then anything named after the project.
  for (const stack of [prod, staging]) await stack?.destroy().catch(() => undefined);
  if (p !== undefined) {
    await removeNamedAfter(`${p.project}-`);
    p.cleanup();
  }
  await pg?.stop();
}, 10 * MINUTE);

describe("delivery with the real Pulumi engine", () => {
  it("quick start from nothing: `npm run up -- staging` deploys, and the outputs keep the contract", async () => {
    const res = await p.npm("up", ["staging", "--", "--yes"], { env: p.userEnv });
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toContain("Generated a local passphrase in .pulumi-state/passphrase");
    expect(res.stdout).toContain("secrets.SECRET_KEY was unset: set it to a local default");
    staging = await p.stack("staging");
    const got = await p.pulumi(["config", "get", "--path", "secrets.SECRET_KEY", "--stack", "staging"]);
    secrets.push(got.stdout.trim());
    expectNoSecret(res.stdout + res.stderr, "the quick start's output");

    const outputs = StackOutputs.parse(await outputsOf(staging));
    expect(outputs.environment).toBe("staging");
    expect(outputs.imageRef).toBe(outputs.imageDigest);
    expect(outputs.url).toBe(`http://127.0.0.1:${stagingPort}`);
    // Probed at the release's own address on the stack's network, from inside, through the engine.
    const release = await appContainer("staging");
    expect(outputs.readiness).toMatchObject({ ready: true, imageDigest: outputs.imageDigest, url: `http://${release.Name.slice(1)}:8000/readyz` });
    expect(await servingRelease(outputs.url)).toBe(release.Id.slice(0, 12));
    expect(outputs.readiness.hardening).toEqual({ user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true });
    expect((await httpRequest(`${outputs.url}/readyz`)).status).toBe(200);
    const version = JSON.parse((await httpRequest(`${outputs.url}/version`)).body) as { version: string };
    expect(version.version).toBe(outputs.readiness.version);
  }, 10 * MINUTE);

  it("idempotence: staging has nothing to change right after, and no drift on refresh", async () => {
    await staging.preview({ expectNoChanges: true });
    await staging.refresh({ previewOnly: true, expectNoChanges: true });
  }, 5 * MINUTE);

  it("promotion: prod runs staging's digest, reaches its database, has no rollback target yet, and is idempotent", async () => {
    prod = await p.stack("prod");
    const databaseUrl = `postgresql://${pg.user}:${pg.password}@${hostAddress}:${pg.port}/${pg.database}`;
    const secretKey = randomBytes(32).toString("base64url");
    secrets.push(databaseUrl, secretKey);
    await p.setSecret("prod", "secrets.DATABASE_URL", databaseUrl);
    await p.setSecret("prod", "secrets.SECRET_KEY", secretKey);

    let text = "";
    await prod.up({ onOutput: (out) => (text += out) });
    expect(text).not.toContain("Undefined value");
    expect(text).not.toMatch(/warning:/);
    const [s, o] = [await outputsOf(staging), await outputsOf(prod)];
    expect(o.imageRef).toBe(s.imageRef);
    expect(o.imageDigest).toBe(s.imageDigest);
    expect(Object.keys(o)).not.toContain("previousImageRef");
    expect(o.promotedFrom).toEqual({
      stack: `organization/${p.project}/staging`,
      imageDigest: s.imageDigest,
      checkedAt: (s.readiness as { checkedAt: string }).checkedAt,
    });
    StackOutputs.parse(o);
    // /readyz checks the database: prod answers 200 only because it reached PostgreSQL.
    expect((await httpRequest(`${String(o.url)}/readyz`)).status).toBe(200);
    await prod.preview({ expectNoChanges: true });
    await prod.refresh({ previewOnly: true, expectNoChanges: true });
    expectNoSecret(text, "prod's update output");
  }, 10 * MINUTE);

  it("rotation: `npm run rotate` then `pulumi up` runs the new value with no request lost, shown nowhere in clear text", async () => {
    const before = await appContainer("staging");
    const url = String((await outputsOf(staging)).url);
    const res = await p.npm("rotate", ["--stack", "staging", "SECRET_KEY", "--generate"]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain("Stored secrets.SECRET_KEY for stack staging, encrypted");
    const rotated = (await p.pulumi(["config", "get", "--path", "secrets.SECRET_KEY", "--stack", "staging"])).stdout.trim();
    expect(secrets).not.toContain(rotated);
    secrets.push(rotated);

    let text = "";
    const { report } = await underLoad(url, () => staging.up({ onOutput: (out) => (text += out) }));
    const after = await appContainer("staging");
    expect(after.Id).not.toBe(before.Id);
    expect(after.Config.Env).toContain(`SECRET_KEY=${rotated}`);
    // The load saw the old release, then the new one, and nothing in between.
    const served = [...new Set(report.samples.map((sample) => sample.release))];
    expect(served).toEqual([before.Id.slice(0, 12), after.Id.slice(0, 12)]);
    expectNoSecret(res.stdout + res.stderr, "the rotation's output");
    expectNoSecret(text, "the update's output");
    expectNoSecret(JSON.stringify(await staging.outputs()), "the stack outputs");
    expectNoSecret(p.stateFile("staging"), "the state file");
    expectNoSecret(p.stateFile("prod"), "prod's state file");
    expect((await outputsOf(staging)).readiness).toMatchObject({ ready: true });
  }, 10 * MINUTE);

  it("a new staging digest is promoted with no request lost, and prod's rollback target is the digest it ran before", async () => {
    const first = String((await outputsOf(prod)).imageRef);
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# release ${randomBytes(4).toString("hex")}\n`);
    await staging.up();
    const second = String((await outputsOf(staging)).imageRef);
    expect(second).not.toBe(first);
    expect((await outputsOf(staging)).previousImageRef).toBe(first);

    await underLoad(String((await outputsOf(prod)).url), () => prod.up());
    const o = await outputsOf(prod);
    expect(o.imageRef).toBe(second);
    expect(o.previousImageRef).toBe(first);
    expect((await releaseContainers("prod")).map((r) => r.State.Status)).toEqual(["running"]);

    // An update that keeps the image keeps the rollback target.
    await p.setConfig("prod", "service.env.LOG_LEVEL", "ERROR");
    await prod.up();
    const kept = await outputsOf(prod);
    expect(kept.imageRef).toBe(second);
    expect(kept.previousImageRef).toBe(first);
  }, 10 * MINUTE);

  it("rollback: `npm run rollback -- prod` returns to the previous image with no request lost, records it, and is refused with nothing to go back to", async () => {
    const { imageRef: second, previousImageRef: first, url } = await outputsOf(prod);
    const { result: res } = await underLoad(String(url), () => p.npm("rollback", ["prod", "--", "--yes"]));
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expect(res.stdout).toContain(`Rolling stack prod back from ${String(second)} to ${String(first)}.`);
    const o = await outputsOf(prod);
    expect(o.imageRef).toBe(first);
    expect(o.imageDigest).toBe(first);
    expect(o.previousImageRef).toBe(second);
    expect(o.rollback).toMatchObject({ fromImageRef: second });
    expect(Object.keys(o)).not.toContain("promotedFrom");
    expect(o.readiness).toMatchObject({ ready: true, imageDigest: first });
    expect((await releaseContainers("prod")).map((r) => r.State.Status)).toEqual(["running"]);

    // Staging still offers the release prod rolled back from: the gate refuses to promote it again.
    const refused = await previewJson("prod", "prod-blocked-rolled-back");
    const verdict = readVerdict(diagnostics(refused.doc));
    expect(verdict?.allowed === false && verdict.reasons.map((r) => r.code)).toEqual(["rolled-back-image"]);

    // A second rollback goes forward again, on the same path.
    const forward = await p.npm("rollback", ["prod", "--", "--yes"]);
    expect(forward.code, forward.stdout + forward.stderr).toBe(0);
    const back = await outputsOf(prod);
    expect([back.imageRef, back.previousImageRef]).toEqual([second, first]);

    const unknown = await p.npm("rollback", ["nosuch"]);
    expect(unknown.code).toBe(3);
    expect(unknown.stderr).toContain("Stack nosuch does not exist in this backend; there is nothing to roll back.");
  }, 10 * MINUTE);

  it("a release the backend refuses at start fails the update soon after its container exits, naming it, and the old release keeps serving", async () => {
    const before = await outputsOf(staging);
    const serving = await appContainer("staging");
    const url = String(before.url);
    await p.setConfig("staging", "service.env.LOG_LEVEL", "verbose");
    try {
      const since = Math.floor(Date.now() / 1000);
      const { result: res } = await underLoad(url, () => p.pulumi(["up", "--yes", "--stack", "staging"]));
      const ended = Date.now();
      const text = res.stdout + res.stderr;
      expect(res.code, text).not.toBe(0);
      // The container's own error line, not a generic "not healthy".
      expect(text).toContain("LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'");
      expect(text).toMatch(/the container (exited with code 78|is crash-looping)/);
      expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      expectNoSecret(text, "the failed update's output");
      // The old release still serves, the outputs still describe it; the failed candidate waits beside it.
      expect(await servingRelease(url)).toBe(serving.Id.slice(0, 12));
      expect(await outputsOf(staging)).toEqual(before);
      const releases = await releaseContainers("staging");
      expect(releases.map((r) => r.Id)).toContain(serving.Id);
      const candidate = releases.find((r) => r.Id !== serving.Id);
      expect(candidate).toBeDefined();
      // From the candidate's first exit to the end of `pulumi up`.
      const firstExit = await firstExitOf(candidate!.Id, since, Math.ceil(ended / 1000) + 1);
      expect(firstExit).toBeDefined();
      expect(ended - firstExit!).toBeLessThan(15_000);
    } finally {
      await p.setConfig("staging", "service.env.LOG_LEVEL", "INFO");
    }
    await underLoad(url, () => staging.up());
    expect((await outputsOf(staging)).readiness).toMatchObject({ ready: true });
    // The fixed release replaced both the old one and the failed candidate.
    const after = await appContainer("staging");
    expect(after.Id).not.toBe(serving.Id);
  }, 10 * MINUTE);

  it("refuses promotion from a staging stack never deployed or unknown, without a stack trace", async () => {
    const never = `organization/${p.project}/never`;
    expect((await p.pulumi(["stack", "init", never])).code).toBe(0);
    try {
      await p.setConfig("prod", "promotion.fromStack", never);
      const empty = await previewJson("prod", "prod-blocked-never-deployed");
      expect(empty.code).not.toBe(0);
      const verdict = readVerdict(diagnostics(empty.doc));
      expect(verdict?.allowed === false && verdict.reasons.map((r) => `${r.code} ${r.output}`)).toEqual([
        "missing-output environment",
        "missing-output imageRef",
        "missing-output imageDigest",
        "missing-output readiness",
      ]);
      expect(printed(empty)).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);

      // A stack the backend does not hold: refused with the engine's reason and the commands that fix it.
      const nosuch = `organization/${p.project}/nosuch`;
      await p.setConfig("prod", "promotion.fromStack", nosuch);
      const unknown = await previewJson("prod", "prod-blocked-unknown");
      expect(unknown.code).not.toBe(0);
      const unknownVerdict = readVerdict(diagnostics(unknown.doc));
      expect(unknownVerdict?.allowed === false && unknownVerdict.reasons.map((r) => r.code)).toEqual(["stack-not-found"]);
      expect(printed(unknown)).toContain(`staging stack ${nosuch} not found or unreadable (unknown stack "${nosuch}")`);
      expect(printed(unknown)).toContain(`pulumi stack init ${nosuch}`);
      expect(printed(unknown)).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    } finally {
      await p.setConfig("prod", "promotion.fromStack", `organization/${p.project}/staging`);
    }
  }, 10 * MINUTE);

  it("refuses promotion when staging's readiness record says not ready", async () => {
    const original = await staging.exportStack();
    const broken = JSON.parse(JSON.stringify(original)) as typeof original;
    const stackResource = (broken.deployment.resources as { type: string; outputs: { readiness: { ready: boolean } } }[]).find(
      (r) => r.type === "pulumi:pulumi:Stack",
    );
    stackResource!.outputs.readiness.ready = false;
    await staging.importStack(broken);
    try {
      const res = await previewJson("prod", "prod-blocked-not-ready");
      expect(res.code).not.toBe(0);
      const verdict = readVerdict(diagnostics(res.doc));
      expect(verdict?.allowed === false && verdict.reasons.map((r) => r.code)).toEqual(["not-ready"]);
    } finally {
      await staging.importStack(original);
    }
  }, 10 * MINUTE);

  it("refuses a stale staging check, and lets a recorded override through", async () => {
    await p.setConfig("prod", "promotion.maxAgeHours", "0.01");
    try {
      const checkedAt = Date.parse(String(((await outputsOf(staging)).readiness as { checkedAt: string }).checkedAt));
      const wait = checkedAt + 40_000 - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const stale = await previewJson("prod", "prod-blocked");
      expect(stale.code).not.toBe(0);
      const verdict = readVerdict(diagnostics(stale.doc));
      expect(verdict?.allowed === false && verdict.reasons.map((r) => r.code)).toEqual(["stale-readiness"]);

      await p.setConfig("prod", "promotion.override.reason", "INC-7: staging check expired during the incident");
      await p.setConfig("prod", "promotion.override.approvedBy", "alice");
      let text = "";
      await prod.up({ onOutput: (out) => (text += out) });
      expect(text).toContain("PROMOTION OVERRIDE");
      expect((await outputsOf(prod)).promotionOverride).toEqual({ reason: "INC-7: staging check expired during the incident", approvedBy: "alice" });
    } finally {
      await p.pulumi(["config", "rm", "--path", "promotion.override", "--stack", "prod"]);
      await p.setConfig("prod", "promotion.maxAgeHours", "24");
    }
  }, 10 * MINUTE);

  it("preview -> comment: real documents give the real counts, ALLOWED with digest and check time, BLOCKED with every reason", async () => {
    await p.setConfig("staging", "service.env.FEATURE_REPORTS", "true");
    try {
      const stagingDoc = await previewJson("staging", "staging-changes");
      expect(stagingDoc.code).toBe(0);
      const prodDoc = await previewJson("prod", "prod-allowed");
      expect(prodDoc.code).toBe(0);
      await p.setConfig("staging", "service.resources.memoryMb", "3");
      const failed = await previewJson("staging", "staging-failed");
      expect(failed.code).not.toBe(0);

      const secretsFiles: string[] = [];
      for (const stack of ["staging", "prod"]) {
        const file = path.join(p.dir, `${stack}-config.json`);
        fs.writeFileSync(file, (await p.pulumi(["config", "--show-secrets", "--json", "--stack", stack])).stdout, { mode: 0o600 });
        secretsFiles.push("--secrets-file", file);
      }
      const comment = async (...stacks: string[]): Promise<string> => {
        const res = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), ...stacks, ...secretsFiles, "--dry-run"], { cwd: p.dir, env: p.env });
        expect(res.code, res.stderr).toBe(0);
        return res.stdout;
      };

      const allowed = await comment(`--stack=staging=${stagingDoc.file}`, `--stack=prod=${prodDoc.file}`);
      const counts = (doc: Record<string, unknown>) => {
        const c = (doc.changeSummary ?? {}) as Record<string, number>;
        return [c.create ?? 0, c.update ?? 0, c.replace ?? 0, c.delete ?? 0, c.same ?? 0].join(" | ");
      };
      expect(allowed).toContain(`| \`staging\` | succeeded | ${counts(stagingDoc.doc)} |`);
      expect(allowed).toContain(`| \`prod\` | succeeded | ${counts(prodDoc.doc)} |`);
      expect((stagingDoc.doc.changeSummary as Record<string, number>).replace).toBeGreaterThan(0);
      const s = await outputsOf(staging);
      const checkedAt = (s.readiness as { checkedAt: string }).checkedAt;
      expect(allowed).toContain(`**Promotion: ALLOWED** — digest \`${String(s.imageDigest)}\`, staging checked at \`${checkedAt}\``);
      // The env change replaces the container; the comment says why, by property name only.
      expect(allowed).toMatch(/\*\*replace\*\* `pulumi-nodejs:dynamic:Resource` `[^`]+-staging-release` \(replaced because of: `env`\)/);

      const blocked = await comment(`--stack=staging=${failed.file}`, `--exit-code=staging=${failed.code}`, `--stack=prod=${path.join(p.dir, "prod-blocked.json")}`, "--exit-code=prod=255");
      expect(blocked).toContain("**Promotion: BLOCKED** (1 reason)");
      expect(blocked).toContain("`readiness.checkedAt`: staging was last checked at");
      expect(blocked).toContain("### `staging`: preview FAILED");
      expect(blocked).toContain("Too small: expected number to be >=64");
      for (const text of [allowed, blocked]) expectNoSecret(text, "the pull-request comment");
    } finally {
      await p.pulumi(["config", "rm", "--path", "service.env.FEATURE_REPORTS", "--stack", "staging"]);
      await p.pulumi(["config", "rm", "--path", "service.resources.memoryMb", "--stack", "staging"]);
    }
  }, 10 * MINUTE);

  it("a personal stack is one command too: `npm run up -- dev` picks a free host port", async () => {
    p.writeStackFile("dev", { image: { baseImage: LOCAL_PYTHON_BASE, name: p.project }, proxy: { image: LOCAL_PROXY_IMAGE } });
    const res = await p.npm("up", ["dev", "--", "--yes"]);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    const port = /service\.hostPort was unset: set it to (\d+)/.exec(res.stdout)?.[1];
    expect(port).toBeDefined();
    expect([String(stagingPort), String(prodPort)]).not.toContain(port);
    const dev = await p.stack("dev");
    const outputs = await outputsOf(dev);
    expect(outputs.url).toBe(`http://127.0.0.1:${port}`);
    expect((await httpRequest(`${String(outputs.url)}/readyz`)).status).toBe(200);
    // One image so far: nothing to roll back to, and nothing is changed.
    const rollback = await p.npm("rollback", ["dev", "--", "--yes"]);
    expect(rollback.code).toBe(3);
    expect(rollback.stderr).toContain("Stack dev has no earlier release to roll back to");
    await dev.destroy();
  }, 10 * MINUTE);

  it("destroy: both stacks leave no container, network or volume behind", async () => {
    await prod.destroy();
    await staging.destroy();
    expect(await leftovers()).toEqual([]);
  }, 10 * MINUTE);
});

/** Everything a preview printed: its diagnostics (in the JSON document) and its stderr. */
function printed(preview: { doc: Record<string, unknown>; log: string }): string {
  return [...diagnostics(preview.doc), preview.log].join("\n");
}

/** The messages of a preview document's diagnostics. */
function diagnostics(doc: Record<string, unknown>): string[] {
  return ((doc.diagnostics ?? []) as { message?: string }[]).map((d) => d.message ?? "");
}
