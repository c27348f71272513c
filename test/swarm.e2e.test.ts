/**
 * The Swarm target with the real Pulumi engine on a real two-node swarm (support/swarm.ts: this
 * machine's engine as the manager, a second engine in a network namespace as the worker), images
 * through a throwaway registry by digest (signed by staging, verified by prod's gate, as every
 * registry stack), PostgreSQL on the manager's address. In order, sharing the
 * swarm, the registry and both stacks: staging and prod as 3-replica services with tasks on both
 * nodes, hardened as observed on the tasks, idempotent; a secret rotation, a promotion and a
 * rollback under load through the proxy with no failed request; a release the backend refuses,
 * rolled back by Swarm with the cause and the old digest on every task; image retention on both
 * nodes (`release.keepImages` 1: at most 2 images of a stack on a node after three releases, an old
 * image of the stack and the container of a finished task of it removed from each node, another
 * stack's images left alone), and a rollback to a target removed from the worker by hand, which the
 * worker pulls again; a killed task and a drained worker under load; scaling 3 -> 5 -> 2 without
 * restarting the kept tasks; HTTPS at the proxy in `certificate` mode (a CA the test makes), its
 * certificate replaced under HTTPS load, what the proxy serves seen at the program's start and in the
 * pull-request comment; destroy leaving nothing (no retention job either) on either node. Fails
 * (never skips) without the Pulumi CLI, the engine, the images, `ip` and `nsenter`, openssl, cosign
 * and syft, or PostgreSQL's binaries.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProdOutputs, StackOutputs } from "../components/contract";
import { factsOfDer } from "../components/proxy/certificates";
import { leafDer } from "../components/proxy/tlsProbe";
import { readTlsStatus } from "../components/proxy/tlsStatus";
import { PROJECT_LABEL, stackImageRepository, stackImageTag } from "../components/release/images";
import { JOB_LABEL, type NodeImages } from "../components/swarm/nodeImages";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE, docker, requireDockerEngine, type DockerOptions, type DockerResult } from "../support/docker";
import { requirePulumiCli, run, scratchProject, type ScratchProject } from "../support/engine";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { LOCAL_REGISTRY_IMAGE, startRegistry, type Registry } from "../support/registry";
import { HSTS } from "../support/securityHeaders";
import { makeCosignKeys, type CosignKeys } from "../support/signingKeys";
import { initRegistryStacks, registryStackFile } from "../support/stacks";
import { firstFailedTask, runningTasks as tasksOf, startSwarm, type RunningTask, type TestSwarm } from "../support/swarm";
import { makeCa, privateKeyLines, signServerCertificate, type TestCa } from "../support/throwawayCa";
import { underLoad as underLoadAt } from "../support/underLoad";
import { freePort, httpRequest, httpsRequest, waitFor } from "../support/wait";

const MINUTE = 60_000;
/** Swarm's monitor window in these stacks: short, so the suite stays short. */
const MONITOR_SECONDS = 2;

let p: ScratchProject;
let swarm: TestSwarm;
let registry: Registry;
let pg: PostgresCluster;
let staging: Stack;
let prod: Stack;
/** Every secret value the stacks ever held; none may show up in clear text anywhere. */
const secrets: string[] = [];
/** The images staging released, in order (`<registry>/<name>@sha256:...`). */
const stagingReleases: string[] = [];
/** What each stack keeps on a node besides the serving image and the rollback target. */
const KEEP_IMAGES = 1;

function expectNoSecret(text: string, where: string): void {
  for (const value of secrets) expect(text.includes(value), `a secret value appears in ${where}`).toBe(false);
}

async function outputsOf(stack: Stack): Promise<Record<string, unknown>> {
  return Object.fromEntries(Object.entries(await stack.outputs()).map(([k, v]) => [k, v.value]));
}

const serviceName = (stack: string) => `${p.project}-${stack}-app`;

const runningTasks = (stack: string) => tasksOf(serviceName(stack));

/** `docker` on the node the task runs on. */
function onNode(task: RunningTask, args: string[]) {
  return task.node === swarm.workerNodeId ? swarm.worker(args) : docker(args);
}

/** `docker` on one node: the manager's engine (this machine's) or the worker's. */
type OnNode = (args: readonly string[], options?: DockerOptions) => Promise<DockerResult>;

/** Image ids on a node: those carrying the stack's own tag (its images there), or every image of the project. */
async function imagesOn(run: OnNode, stack?: "staging" | "prod"): Promise<string[]> {
  const filter = stack === undefined ? `label=${PROJECT_LABEL}=${p.project}` : `reference=${stackImageRepository(p.project, stack)}:*`;
  return [...new Set((await run(["image", "ls", "-q", "--no-trunc", "--filter", filter])).stdout.split("\n").filter(Boolean))].sort();
}

/** The image id of a reference, the same on every node (a digest of the image's config). */
async function imageId(ref: string): Promise<string> {
  return (await docker(["image", "inspect", "--format", "{{.Id}}", ref])).stdout.trim();
}

/** The Swarm secrets and configs labelled as the stack's are exactly those its service mounts: no leftover. */
async function expectOnlyMountedSwarmObjects(stack: "staging" | "prod"): Promise<void> {
  const labelled = async (kind: "secret" | "config") =>
    (await docker([kind, "ls", "--format", "{{.Name}}", "--filter", `label=backend-delivery.component=${p.project}-${stack}`])).stdout.split("\n").filter(Boolean).sort();
  const spec = JSON.parse((await docker(["service", "inspect", serviceName(stack), "--format", "{{json .Spec.TaskTemplate.ContainerSpec}}"])).stdout) as {
    Secrets: { SecretName: string }[];
    Configs: { ConfigName: string }[];
  };
  expect(await labelled("secret")).toEqual(spec.Secrets.map((x) => x.SecretName).sort());
  expect(await labelled("config")).toEqual(spec.Configs.map((x) => x.ConfigName).sort());
}

/** What the stack's image retention recorded for each node in its last run (the state, as `pulumi stack export` has it). */
async function retentionRecord(stack: Stack): Promise<NodeImages[]> {
  const resources = ((await stack.exportStack()).deployment as { resources?: { urn: string; outputs?: { nodes?: NodeImages[] } }[] }).resources ?? [];
  return resources.find((r) => r.urn.endsWith(`::${p.project}-${stack.name}-images`))?.outputs?.nodes ?? [];
}

/** Runs `work` under a steady load through the proxy (20 requests a second) and asserts that not one failed. */
async function underLoad<T>(stack: Stack, work: () => Promise<T>): Promise<{ result: T; releases: string[] }> {
  const url = String((await outputsOf(stack)).url);
  const { result, report } = await underLoadAt(url, work);
  return { result, releases: [...new Set(report.samples.map((s) => s.release ?? ""))] };
}

/** The stack file of a Swarm stack: 3 replicas through the registry, signed by staging and verified by prod. */
function stackFile(stack: "staging" | "prod", hostPort: number, publicKey: string): Record<string, unknown> {
  const service = { hostPort, orchestrator: "swarm", replicas: 3, update: { monitorSeconds: MONITOR_SECONDS }, env: { LOG_LEVEL: "INFO" } };
  return registryStackFile(stack, { hostPort, project: p.project, repository: `${p.project}/backend`, registry, publicKey, extra: { service } });
}

/** The way users set a PEM: on `pulumi config set`'s stdin. */
async function setFromStdin(stack: string, key: string, value: string, secret = false): Promise<void> {
  const res = await p.pulumi(["config", "set", ...(secret ? ["--secret"] : []), "--path", key, "--stack", stack], { stdin: value });
  expect(res.code, res.stderr).toBe(0);
}

/** A chain (leaf, then the CA) and its key for `domain`, signed by `ca`. */
async function chainFor(ca: TestCa, domain: string, name: string): Promise<{ chain: string; key: string }> {
  const made = await signServerCertificate(ca, name, { commonName: domain, dnsNames: [domain] });
  const read = (file: string) => fs.readFileSync(file, "utf8").trim();
  return { chain: `${read(made.certFile)}\n${read(ca.caFile)}`, key: read(made.keyFile) };
}

/** What is left of the project on a node: services, secrets, networks, volumes, containers. */
async function leftovers(run: (args: string[]) => Promise<{ stdout: string }>, swarmObjects: boolean): Promise<string[]> {
  const names = async (args: string[]) => (await run(args)).stdout.split("\n").filter((n) => n.startsWith(`${p.project}-`));
  return [
    ...(swarmObjects ? [...(await names(["service", "ls", "--format", "{{.Name}}"])), ...(await names(["secret", "ls", "--format", "{{.Name}}"]))] : []),
    ...(await names(["network", "ls", "--format", "{{.Name}}"])),
    ...(await names(["volume", "ls", "--format", "{{.Name}}"])),
    ...(await names(["ps", "-a", "--format", "{{.Names}}"])),
  ];
}

beforeAll(async () => {
  await requirePulumiCli();
  for (const image of [LOCAL_PYTHON_BASE, LOCAL_PROXY_IMAGE, LOCAL_REGISTRY_IMAGE]) await requireDockerEngine(image);
  swarm = await startSwarm();
  p = scratchProject();
  let keys: CosignKeys;
  [registry, pg, keys] = await Promise.all([startRegistry({ address: swarm.managerAddress }), startPostgres({ alsoListenOn: swarm.managerAddress }), makeCosignKeys()]);
  secrets.push(registry.password, pg.password, keys.password, ...keys.privateKey.split("\n").filter((line) => line.length > 20));
  fs.mkdirSync(path.dirname(p.passphraseFile), { recursive: true });
  fs.writeFileSync(p.passphraseFile, randomBytes(24).toString("base64url"), { mode: 0o600 });
  const databaseUrl = `postgresql://${pg.user}:${pg.password}@${swarm.managerAddress}:${pg.port}/${pg.database}`;
  secrets.push(databaseUrl);
  const files = { staging: stackFile("staging", await freePort(), keys.publicKey), prod: stackFile("prod", await freePort(), keys.publicKey) };
  secrets.push(...(await initRegistryStacks(p, files, { databaseUrl: () => databaseUrl, registryPassword: registry.password, keys })));
  for (const stack of ["staging", "prod"]) await p.setConfig(stack, "release.keepImages", String(KEEP_IMAGES));
  staging = await p.stack("staging");
  prod = await p.stack("prod");
}, 5 * MINUTE);

afterAll(async () => {
  for (const stack of [prod, staging]) await stack?.destroy().catch(() => undefined);
  // The stacks' own tags on this machine's engine (the images themselves are the registry's pulls).
  if (p !== undefined) {
    const refs = (await docker(["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", `reference=${p.project}-*`], { allowFailure: true })).stdout.split("\n").filter(Boolean);
    if (refs.length > 0) await docker(["image", "rm", ...refs], { allowFailure: true });
  }
  p?.cleanup();
  // The swarm goes first: its services' tasks may still hold a connection to the database.
  await swarm?.stop();
  await Promise.all([registry?.stop(), pg?.stop()]);
}, 10 * MINUTE);

describe("the Swarm target on a real two-node swarm", () => {
  it("staging and prod: 3 replicas over both nodes from the registry by digest, hardened as observed on every task, idempotent", async () => {
    let text = "";
    await staging.up({ onOutput: (out) => (text += out) });
    const s = StackOutputs.parse(await outputsOf(staging));
    stagingReleases.push(s.imageRef);
    expect(s.imageRef).toBe(`${registry.server}/${p.project}/backend@${s.imageDigest}`);
    expect(s.readiness).toMatchObject({ ready: true, imageDigest: s.imageDigest, url: `http://tasks.${serviceName("staging")}:8000/readyz`, replicas: { desired: 3, ready: 3 } });
    expect(s.readiness.hardening).toEqual({ user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true });

    const tasks = await runningTasks("staging");
    expect(tasks).toHaveLength(3);
    expect(new Set(tasks.map((t) => t.node))).toEqual(new Set([swarm.managerNodeId, swarm.workerNodeId]));
    expect(new Set(tasks.map((t) => t.image))).toEqual(new Set([s.imageRef]));
    // Observed on a task of each node, by its own engine: the kernel's word, and the engine's.
    for (const node of [swarm.managerNodeId, swarm.workerNodeId]) {
      const task = tasks.find((t) => t.node === node)!;
      expect((await onNode(task, ["exec", task.container, "cat", "/proc/1/status"])).stdout).toMatch(/^NoNewPrivs:\s+1$/m);
      const [info] = JSON.parse((await onNode(task, ["inspect", task.container])).stdout) as { Config: { User: string; Env: string[] }; HostConfig: { ReadonlyRootfs: boolean; CapDrop: string[] } }[];
      expect([info!.Config.User, info!.HostConfig.ReadonlyRootfs, info!.HostConfig.CapDrop]).toEqual(["10001:10001", true, ["ALL"]]);
      expect(info!.Config.Env.map((e) => e.split("=")[0])).not.toContain("SECRET_KEY");
    }
    const inspect = (await docker(["service", "inspect", serviceName("staging")])).stdout;
    expect(inspect).toContain('"Mode": "dnsrr"');
    expectNoSecret(inspect, "docker service inspect");
    expectNoSecret(text, "the staging update's output");
    // The backend answers through the proxy, from the tasks in turn.
    const answered = new Set<string>();
    for (let i = 0; i < 30 && answered.size < 3; i++) answered.add((JSON.parse((await httpRequest(`${s.url}/version`)).body) as { release: string }).release);
    expect(answered).toEqual(new Set(tasks.map((t) => t.container.slice(0, 12))));
    // Image retention ran on both nodes after the rollout: each tagged the image it serves as the stack's.
    const first = await imageId(s.imageRef);
    expect((await retentionRecord(staging)).map((n) => [n.node, n.kept, n.removed])).toEqual(
      [swarm.managerNodeId, swarm.workerNodeId].sort().map((node) => [node, [first], []]),
    );
    for (const run of [docker, swarm.worker]) expect(await imagesOn(run, "staging")).toEqual([first]);
    await staging.preview({ expectNoChanges: true, diff: true });

    await prod.up();
    const o = ProdOutputs.parse(await outputsOf(prod));
    expect(o.imageRef).toBe(s.imageRef);
    expect(o.readiness).toMatchObject({ ready: true, replicas: { desired: 3, ready: 3 } });
    expect((await httpRequest(`${o.url}/readyz`)).status).toBe(200);
    expect(new Set((await runningTasks("prod")).map((t) => t.node)).size).toBe(2);
    await prod.preview({ expectNoChanges: true, diff: true });
  }, 15 * MINUTE);

  it("a docker:host that is a Swarm worker is refused in a preview, before anything, naming the manager", async () => {
    await p.setConfig("staging", "docker:host", swarm.workerHost);
    try {
      const res = await p.pulumi(["preview", "--stack", "staging"]);
      const text = res.stdout + res.stderr;
      expect(res.code, text).not.toBe(0);
      expect(text).toContain("stack staging cannot run its Swarm service (1 problem); nothing was changed:");
      expect(text).toContain(`is a Swarm worker; services are created on a manager (managers: ${swarm.managerAddress})`);
      expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    } finally {
      await p.pulumi(["config", "rm", "docker:host", "--stack", "staging"]);
    }
  }, 5 * MINUTE);

  it("rotation: a new Swarm secret, the service rolled to it start-first under load with no failed request, the old secret gone, no value in clear text", async () => {
    const secretsBefore = (await docker(["secret", "ls", "--format", "{{.Name}}", "--filter", `name=${p.project}-staging`])).stdout.split("\n").filter(Boolean).sort();
    const res = await p.npm("rotate", ["--stack", "staging", "SECRET_KEY", "--generate"]);
    expect(res.code, res.stderr).toBe(0);
    const rotated = (await p.pulumi(["config", "get", "--path", "secrets.SECRET_KEY", "--stack", "staging"])).stdout.trim();
    secrets.push(rotated);
    // The preview the rotation printed: the secrets replaced, the service updated in place.
    // A new value is a new secret: created, the old one deleted (after the service moved off it).
    expect(res.stdout).toMatch(new RegExp(`create +${p.project}-staging-SECRET_KEY-[0-9a-f]{12} \\(docker:index/secret:Secret\\)`));
    expect(res.stdout).toMatch(new RegExp(`delete +${p.project}-staging-SECRET_KEY-[0-9a-f]{12} \\(docker:index/secret:Secret\\)`));
    expect(res.stdout).not.toMatch(/replace +\S+-staging-service/);
    expect(res.stdout).toMatch(new RegExp(`update +${p.project}-staging-service \\(docker:index/service:Service\\)`));
    const before = await runningTasks("staging");
    let text = "";
    const { releases } = await underLoad(staging, () => staging.up({ onOutput: (out) => (text += out) }));
    const after = await runningTasks("staging");
    expect(after).toHaveLength(3);
    expect(after.map((t) => t.container).filter((c) => before.some((b) => b.container === c))).toEqual([]);
    expect(releases.length).toBeGreaterThan(1);
    const secretsAfter = (await docker(["secret", "ls", "--format", "{{.Name}}", "--filter", `name=${p.project}-staging`])).stdout.split("\n").filter(Boolean).sort();
    expect(secretsAfter).toHaveLength(2);
    expect(secretsAfter.filter((n) => secretsBefore.includes(n))).toEqual([]);
    // Pulumi's create-before-delete removed the rotated-out secrets: nothing is left for a pruning step.
    await expectOnlyMountedSwarmObjects("staging");
    // The task reads the new value from its secret file.
    const task = after.find((t) => t.node === swarm.managerNodeId) ?? after[0]!;
    expect((await onNode(task, ["exec", task.container, "cat", "/run/secrets/SECRET_KEY"])).stdout.trim()).toBe(rotated);
    expectNoSecret(text + res.stdout + res.stderr, "the rotation's output");
    expectNoSecret(JSON.stringify(await staging.outputs()), "the stack outputs");
    expectNoSecret(p.stateFile("staging"), "the state file");
  }, 10 * MINUTE);

  it("promotion of a new staging digest, then `npm run rollback -- prod`, each under load with no failed request", async () => {
    const first = String((await outputsOf(prod)).imageRef);
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# release ${randomBytes(4).toString("hex")}\n`);
    await staging.up();
    const second = String((await outputsOf(staging)).imageRef);
    stagingReleases.push(second);
    expect(second).not.toBe(first);

    await underLoad(prod, () => prod.up());
    let o = await outputsOf(prod);
    expect([o.imageRef, o.previousImageRef]).toEqual([second, first]);
    expect(new Set((await runningTasks("prod")).map((t) => t.image))).toEqual(new Set([second]));

    // The rollback target, removed from the worker by hand (with the containers of finished tasks
    // still naming it: forced), comes back: the worker pulls it by digest, as the tasks are rescheduled.
    expect((await swarm.worker(["image", "rm", "-f", await imageId(first)])).stdout).toContain("Deleted:");
    expect((await swarm.worker(["image", "inspect", first], { allowFailure: true })).code).not.toBe(0);
    const { result: res } = await underLoad(prod, () => p.npm("rollback", ["prod", "--", "--yes"]));
    expect(res.code, res.stdout + res.stderr).toBe(0);
    o = await outputsOf(prod);
    expect([o.imageRef, o.previousImageRef]).toEqual([first, second]);
    expect(o.rollback).toMatchObject({ fromImageRef: second });
    const back = await runningTasks("prod");
    expect(new Set(back.map((t) => t.image))).toEqual(new Set([first]));
    expect(back.some((t) => t.node === swarm.workerNodeId)).toBe(true);
    expect(await imagesOn(swarm.worker, "prod")).toEqual([await imageId(first), await imageId(second)].sort());
  }, 15 * MINUTE);

  it("a release the backend refuses: Swarm rolls it back, `pulumi up` fails with the task's error line, outputs unchanged, the old digest on every task", async () => {
    const before = await outputsOf(staging);
    const serving = await runningTasks("staging");
    await p.setConfig("staging", "service.env.LOG_LEVEL", "verbose");
    try {
      const { result: res } = await underLoad(staging, () => p.pulumi(["up", "--yes", "--skip-preview", "--stack", "staging"]));
      const ended = Date.now();
      const text = res.stdout + res.stderr;
      expect(res.code, text).not.toBe(0);
      expect(text).toContain("Swarm rolled service");
      expect(text).toContain("LOG_LEVEL: Input should be 'DEBUG', 'INFO', 'WARNING', 'ERROR' or 'CRITICAL'");
      expect(text).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
      expectNoSecret(text, "the failed update's output");
      expect(await outputsOf(staging)).toEqual(before);
      const after = await runningTasks("staging");
      expect(after).toHaveLength(3);
      expect(new Set(after.map((t) => t.release))).toEqual(new Set(serving.map((t) => t.release)));
      expect(new Set(after.map((t) => t.image))).toEqual(new Set([before.imageRef]));
      // From the first failed task of the refused release to the end of `pulumi up`.
      const failedAt = await firstFailedTask(serviceName("staging"), serving[0]!.release);
      expect(failedAt).toBeDefined();
      expect(ended - failedAt!).toBeLessThan((MONITOR_SECONDS + 30) * 1000);
    } finally {
      await p.setConfig("staging", "service.env.LOG_LEVEL", "INFO");
    }
  }, 10 * MINUTE);

  it("image retention on both nodes: three releases with keepImages 1 leave the serving image and the rollback target, an older image and a finished task's container removed, another stack's image held, recorded and shown by npm run status", async () => {
    // The next release is a new image too. Before it, an older image of the stack is planted on each
    // node (built there from the serving one, tagged as the stack's), and on the worker a container of
    // a finished task of the service that ran it.
    const planted = new Map<OnNode, string>();
    for (const run of [docker, swarm.worker]) {
      const built = await run(["build", "-q", "--label", "backend-delivery.planted=1", "-"], { input: `FROM ${stagingReleases.at(-1)}\n` });
      const id = built.stdout.trim();
      await run(["tag", id, stackImageTag(stackImageRepository(p.project, "staging"), id)]);
      planted.set(run, id);
    }
    await swarm.worker(["run", "--name", `${p.project}-planted`, "--network", "none", "--label", `com.docker.swarm.service.name=${serviceName("staging")}`, "--entrypoint", "/opt/venv/bin/python", planted.get(swarm.worker)!, "-c", "pass"]);
    fs.appendFileSync(path.join(p.dir, "backend", "app", "__init__.py"), `# release ${randomBytes(4).toString("hex")}\n`);
    await underLoad(staging, () => staging.up());
    expect((await outputsOf(staging)).readiness).toMatchObject({ ready: true, replicas: { desired: 3, ready: 3 } });
    stagingReleases.push(String((await outputsOf(staging)).imageRef));
    // Three releases, keepImages 1: each node keeps the serving image and the rollback target, no more.
    const [first, second, third] = await Promise.all(stagingReleases.map(imageId));
    for (const run of [docker, swarm.worker]) {
      expect(await imagesOn(run, "staging")).toEqual([second!, third!].sort());
      expect((await run(["image", "inspect", planted.get(run)!], { allowFailure: true })).code, "the planted image is gone").not.toBe(0);
      // The first release lost staging's tag; prod, which runs it, holds it there.
      expect(await imagesOn(run, "prod")).toContain(first);
    }
    expect((await swarm.worker(["ps", "-a", "-q", "--filter", `name=${p.project}-planted`])).stdout.trim()).toBe("");
    // On the worker no image of the project is left that neither stack keeps.
    const keptByStacks = new Set([...(await imagesOn(swarm.worker, "staging")), ...(await imagesOn(swarm.worker, "prod"))]);
    expect((await imagesOn(swarm.worker)).filter((id) => !keptByStacks.has(id))).toEqual([]);
    // What the resource recorded: on the manager the first release is held by prod; the worker lost it
    // by hand before the rollback, and got it back for prod only.
    const kept = [second!, third!].sort();
    expect(await retentionRecord(staging)).toEqual(
      [
        { node: swarm.managerNodeId, kept, removed: [planted.get(docker)], held: [first] },
        { node: swarm.workerNodeId, kept, removed: [planted.get(swarm.worker)], held: [] },
      ].sort((a, b) => a.node.localeCompare(b.node)),
    );
    // `npm run status` shows the same per node, read from the state.
    const status = await p.npm("status", ["staging", "--json"]);
    expect(status.code, status.stderr).toBe(0);
    expect((JSON.parse(status.stdout) as { nodeImages?: unknown }).nodeImages).toEqual((await retentionRecord(staging)).map(({ node, kept, removed }) => ({ node, kept, removed })));
    // A changed setting, a Swarm rollback and a new release later: the stack's secrets and configs are what the service mounts.
    await expectOnlyMountedSwarmObjects("staging");
  }, 10 * MINUTE);

  it("a killed task and a drained worker, under load: no failed request, and Swarm restores 3 replicas", async () => {
    await underLoad(staging, async () => {
      const victim = (await runningTasks("staging")).find((t) => t.node === swarm.workerNodeId)!;
      await swarm.worker(["kill", victim.container]);
      await waitFor(async () => {
        const tasks = await runningTasks("staging");
        return tasks.length === 3 && !tasks.some((t) => t.container === victim.container) ? true : undefined;
      }, { timeoutMs: 60_000, intervalMs: 250, what: "Swarm to replace the killed task" });
    });
    await underLoad(staging, async () => {
      await docker(["node", "update", "--availability", "drain", swarm.workerNodeId]);
      await waitFor(async () => {
        const tasks = await runningTasks("staging");
        return tasks.length === 3 && tasks.every((t) => t.node === swarm.managerNodeId) ? true : undefined;
      }, { timeoutMs: 90_000, intervalMs: 250, what: "the tasks to leave the drained worker" });
    });
    await docker(["node", "update", "--availability", "active", swarm.workerNodeId]);
    await staging.preview({ expectNoChanges: true });
  }, 10 * MINUTE);

  it("scaling 3 -> 5 -> 2 is an update of the service, adds and removes tasks, and restarts none of those it keeps", async () => {
    const before = await runningTasks("staging");
    const templateBefore = (await docker(["service", "inspect", serviceName("staging"), "--format", "{{json .Spec.TaskTemplate}}"])).stdout;
    await p.setConfig("staging", "service.replicas", "5");
    const preview = await p.pulumi(["preview", "--json", "--stack", "staging"]);
    const steps = (JSON.parse(preview.stdout) as { steps?: { op: string; urn: string }[] }).steps ?? [];
    const serviceStep = steps.find((s) => s.urn.endsWith(`docker:index/service:Service::${p.project}-staging-service`));
    expect(serviceStep?.op).toBe("update");
    expect(steps.filter((s) => s.op === "replace" || s.op === "create-replacement").map((s) => s.urn)).toEqual([]);
    // The pull-request comment reads a Swarm stack's preview like any other.
    const document = path.join(p.dir, "staging-scale.json");
    fs.writeFileSync(document, preview.stdout);
    const comment = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), `--stack=staging=${document}`, "--dry-run"], { cwd: p.dir, env: p.env });
    expect(comment.code, comment.stderr).toBe(0);
    expect(comment.stdout).toMatch(new RegExp(`\\*\\*update\\*\\* \`docker:index/service:Service\` \`${p.project}-staging-service\``));
    await staging.up();
    const five = await runningTasks("staging");
    expect(five).toHaveLength(5);
    const templateAfter = (await docker(["service", "inspect", serviceName("staging"), "--format", "{{json .Spec.TaskTemplate}}"])).stdout;
    expect(templateAfter, "the task template changed").toBe(templateBefore);
    expect(five.filter((t) => before.some((b) => b.container === t.container)).length, JSON.stringify({ before, five })).toBe(3);
    expect((await outputsOf(staging)).readiness).toMatchObject({ replicas: { desired: 5, ready: 5 } });

    await p.setConfig("staging", "service.replicas", "2");
    await staging.up();
    const two = await runningTasks("staging");
    expect(two).toHaveLength(2);
    expect(two.every((t) => five.some((f) => f.container === t.container))).toBe(true);
  }, 10 * MINUTE);

  it("HTTPS at the proxy: certificate mode serves the chain with HSTS from the tasks, the tls output is what was served, a new certificate under HTTPS load loses no request", async () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "bd-swarm-tls-"));
    try {
      const domain = `staging.${randomBytes(3).toString("hex")}.test`;
      const ca = await makeCa(work, "swarm e2e");
      const caPem = fs.readFileSync(ca.caFile, "utf8");
      const httpsPort = await freePort();
      const plainUrl = String((await outputsOf(staging)).url);
      const first = await chainFor(ca, domain, "first");
      await p.setConfig("staging", "proxy.domain", domain);
      await p.setConfig("staging", "proxy.httpsPort", String(httpsPort));
      await p.setConfig("staging", "proxy.tls.mode", "certificate");
      await setFromStdin("staging", "proxy.tls.certificate", first.chain);
      await setFromStdin("staging", "tlsPrivateKey", first.key, true);
      let text = "";
      await staging.up({ onOutput: (out) => (text += out) });
      let s = StackOutputs.parse(await outputsOf(staging));
      expect(s.url).toBe(`https://${domain}:${httpsPort}`);
      const answer = await httpsRequest(`${s.url}/version`, { ca: caPem, alpn: true });
      expect([answer.status, answer.alpn, answer.der]).toEqual([200, "h2", leafDer(first.chain)]);
      expect(answer.headers["strict-transport-security"]).toBe(HSTS);
      // Plain HTTP on the stack's host port redirects.
      const redirect = await httpRequest(`${plainUrl}/readyz`, { headers: { host: domain } });
      expect([redirect.status, redirect.headers.location]).toEqual([308, `https://${domain}:${httpsPort}/readyz`]);
      const served = factsOfDer(answer.der);
      expect(s.tls).toEqual({ mode: "certificate", domain, issuer: "CN=throwaway test CA for swarm e2e", notAfter: served.notAfter, fingerprint: served.fingerprint });
      const tasks = await runningTasks("staging");
      expect(tasks.map((t) => t.container.slice(0, 12))).toContain((JSON.parse(answer.body) as { release: string }).release);

      // A new chain and key: the proxy loads them in place, the tasks keep serving, no request is lost.
      const second = await chainFor(ca, domain, "second");
      await setFromStdin("staging", "proxy.tls.certificate", second.chain);
      await setFromStdin("staging", "tlsPrivateKey", second.key, true);
      // A client that resends a GET reset on a reused connection, as browsers do: Caddy's reload closes its idle connections.
      const { report } = await underLoadAt(s.url, () => staging.up({ onOutput: (out) => (text += out) }), { ca: caPem, connectTo: "127.0.0.1", resendReset: true });
      console.log(`certificate replaced under load: ${report.sent} requests, ${report.failed.length} failed, ${report.resent} resent after a reset`);
      const renewed = await httpsRequest(`${s.url}/healthz`, { ca: caPem });
      expect(renewed.der).toBe(leafDer(second.chain));
      s = StackOutputs.parse(await outputsOf(staging));
      expect(s.tls).toMatchObject({ mode: "certificate", fingerprint: renewed.fingerprint });
      expect((await runningTasks("staging")).map((t) => t.container).sort()).toEqual(tasks.map((t) => t.container).sort());
      // The first key's file went with the first certificate.
      expect((await docker(["exec", `${p.project}-staging-proxy`, "ls", "/data/tls"])).stdout.trim().split("\n")).toHaveLength(2);

      // Nothing left to change; the program's start looked through the Swarm proxy, and the comment says what it serves.
      const preview = await p.pulumi(["preview", "--json", "--expect-no-changes", "--stack", "staging"]);
      expect(preview.code, preview.stderr).toBe(0);
      const messages = ((JSON.parse(preview.stdout) as { diagnostics?: { message?: string }[] }).diagnostics ?? []).map((d) => d.message ?? "");
      expect(readTlsStatus(messages)).toMatchObject({ mode: "certificate", domain, served: { fingerprint: renewed.fingerprint }, configured: { fingerprint: renewed.fingerprint } });
      const document = path.join(p.dir, "staging-tls.json");
      fs.writeFileSync(document, preview.stdout);
      const comment = await run("npx", ["tsx", path.join(p.dir, "scripts", "pr-comment.ts"), `--stack=staging=${document}`, "--dry-run"], { cwd: p.dir, env: p.env });
      expect(comment.code, comment.stderr).toBe(0);
      expect(comment.stdout).toMatch(new RegExp(`\\*\\*TLS\\*\\*: \`certificate\` for \`${domain.replace(/\./g, "\\.")}\` — serves a certificate from \`CN=throwaway test CA for swarm e2e\`, valid [01]\\.\\d more days`));
      // The keys in clear text nowhere: updates' output, state, outputs, the preview, the comment, the proxy's and the service's inspect.
      const keyLines = [first.key, second.key].flatMap(privateKeyLines);
      const inspect = (await docker(["inspect", `${p.project}-staging-proxy`])).stdout + (await docker(["service", "inspect", serviceName("staging")])).stdout;
      // Where in the state a key line sits, by resource and property, so a leak names its source.
      const leaks: string[] = [];
      const walk = (v: unknown, at: string): void => {
        if (typeof v === "string") {
          if (keyLines.some((line) => v.includes(line))) leaks.push(at);
        } else if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
      };
      for (const r of (JSON.parse(p.stateFile("staging")) as { checkpoint: { latest: { resources: { urn: string }[] } } }).checkpoint.latest.resources) walk(r, r.urn);
      expect(leaks, "a line of the private key in the state").toEqual([]);
      for (const [where, content] of Object.entries({ output: text, state: p.stateFile("staging"), outputs: JSON.stringify(await staging.outputs()), preview: preview.stdout, comment: comment.stdout, inspect })) {
        for (const line of keyLines) expect(content.includes(line), `a line of the private key appears in ${where}`).toBe(false);
      }
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  }, 10 * MINUTE);

  it("destroy: no service (no retention job either), secret, network, volume or container of the project on either node", async () => {
    await prod.destroy();
    await staging.destroy();
    expect((await docker(["service", "ls", "-q", "--filter", `label=${JOB_LABEL}`])).stdout.trim()).toBe("");
    await waitFor(async () => ((await leftovers(swarm.worker, false)).length === 0 ? true : undefined), { timeoutMs: 60_000, intervalMs: 500, what: "the worker to let go of the project" }).catch(() => undefined);
    expect(await leftovers(docker, true)).toEqual([]);
    expect(await leftovers(swarm.worker, false)).toEqual([]);
  }, 10 * MINUTE);
});
