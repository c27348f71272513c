/**
 * Image retention under Swarm, without a swarm: the node script (components/swarm/node_images.py,
 * run with this machine's python3) holds the same plan as release/images.ts on the same inputs, and
 * does what it should against a stand-in of the Engine API (support/fakeDockerApi.ts); the job's
 * spec, its answer, the nodes it targets and the provider's diff. The program's side under mocks
 * is test/swarmProgram.test.ts; the real two-node swarm is test/swarm.e2e.test.ts.
 */
import { spawn } from "node:child_process";
import * as path from "node:path";
import type Docker from "dockerode";
import { afterEach, describe, expect, it } from "vitest";
import { prunePlan, type PrunePlan } from "../components/release/images";
import { JOB_LABEL, NODE_DOCKER_SOCKET, jobSpec, parseAnswer, swarmImagesProvider, targetNodes, type SwarmImagesInputs } from "../components/swarm/nodeImages";
import { DYNAMIC, kindOf } from "../policy/workloads";
import { startFakeDockerApi, type FakeContainer, type FakeDockerApi, type FakeImage } from "../support/fakeDockerApi";

const SCRIPT = path.resolve(__dirname, "..", "components", "swarm", "node_images.py");

/** Runs python3 with `args`, `input` on stdin; resolves with what it printed and its exit status. */
function python(args: string[], input = "", env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("python3", args, { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.on("error", (error) => reject(new Error(`python3 is needed for this test: ${error.message}`)));
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

/** A plan case: the same inputs for both sides (build times in seconds; the TypeScript side takes ISO-8601). */
interface PlanCase {
  images: { id: string; created: number }[];
  pinned: string[];
  keepImages: number;
}
type Outcome = PrunePlan | { error: string };

/** The Python plan of every case, in one run of the script's own `prune_plan`. */
async function pythonPlans(cases: PlanCase[]): Promise<Outcome[]> {
  const driver = [
    "import json, sys",
    `sys.path.insert(0, ${JSON.stringify(path.dirname(SCRIPT))})`,
    "from node_images import prune_plan",
    "out = []",
    "for c in json.load(sys.stdin):",
    "    try:",
    "        out.append(prune_plan(c['images'], c['pinned'], c['keepImages']))",
    "    except ValueError as error:",
    "        out.append({'error': str(error)})",
    "print(json.dumps(out))",
  ].join("\n");
  const res = await python(["-B", "-c", driver], JSON.stringify(cases));
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as Outcome[];
}

function typescriptPlan(c: PlanCase): Outcome {
  try {
    return prunePlan(c.images.map((i) => ({ id: i.id, created: new Date(i.created * 1000).toISOString() })), c.pinned, c.keepImages);
  } catch (error) {
    return { error: (error as Error).message };
  }
}

/** A small deterministic generator (mulberry32), so a disagreement is found again on the next run. */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const id = (n: number) => `sha256:${n.toString(16).padStart(2, "0").repeat(32)}`;

describe("the node script's plan is images.ts's plan", () => {
  it("on the single host's own cases, several hundred generated ones (ties in build time, pinned images absent from the node) and refused keepImages", async () => {
    const next = random(20);
    const hex = () => Array.from({ length: 64 }, () => "0123456789abcdef"[Math.floor(next() * 16)]).join("");
    const cases: PlanCase[] = [
      // test/retention.test.ts: six images an hour apart; pinned serving and target; a target outside the newest.
      { images: [1, 2, 3, 4, 5, 6].map((n) => ({ id: id(n), created: 1_900_000_000 + n * 3600 })), pinned: [id(6), id(5)], keepImages: 3 },
      { images: [1, 2, 3, 4, 5, 6].map((n) => ({ id: id(n), created: 1_900_000_000 + n * 3600 })), pinned: [id(2), id(6)], keepImages: 3 },
      { images: [{ id: id(1), created: 1_900_000_000 }, { id: id(2), created: 1_900_000_000 }], pinned: [id(9)], keepImages: 1 },
      { images: [], pinned: [], keepImages: 1 },
      ...[0, -1, 1.5].map((keepImages) => ({ images: [{ id: id(1), created: 1 }], pinned: [], keepImages })),
    ];
    for (let i = 0; i < 400; i++) {
      const images = Array.from({ length: Math.floor(next() * 9) }, () => ({ id: `sha256:${hex()}`, created: 1_900_000_000 + Math.floor(next() * 4) * 60 }));
      const pinned = images.filter(() => next() < 0.25).map((image) => image.id);
      if (next() < 0.3) pinned.push(`sha256:${hex()}`);
      cases.push({ images, pinned, keepImages: 1 + Math.floor(next() * 4) });
    }
    const python = await pythonPlans(cases);
    expect(python).toHaveLength(cases.length);
    cases.forEach((c, i) => expect(python[i], JSON.stringify(c)).toEqual(typescriptPlan(c)));
    // The cases are not all alike: some remove, some keep everything, three are refused.
    expect(python.filter((o) => "remove" in o && o.remove.length > 0).length).toBeGreaterThan(100);
    expect(python.filter((o) => "error" in o)).toEqual([0, -1, 1.5].map((k) => ({ error: `keepImages must be an integer of at least 1, got ${k}` })));
  });
});

describe("the node script against the Engine API", () => {
  const NODE = "node-worker-1";
  const PROJECT = "bd";
  const REPO = "bd-staging-images";
  const SERVICE = "bd-staging-app";
  const registry = (n: number) => `registry.example:5000/bd/backend@${id(n)}`;
  const stackTag = (n: number) => `${REPO}:${id(n).slice(7, 19)}`;
  /** A backend image pulled by digest (`n` its age), with the project's label, tagged by the stack or not. */
  const pulled = (n: number, tags: string[] = [stackTag(n)]): FakeImage => ({ id: id(n), created: 1_900_000_000 + n * 60, labels: { "backend-delivery.project": PROJECT }, tags, digests: [registry(n)] });
  const task = (n: number, image: number, state: FakeContainer["state"], service = SERVICE): FakeContainer => ({ id: `c${n}`, imageId: id(image), state, labels: { "com.docker.swarm.service.name": service } });
  let api: FakeDockerApi | undefined;
  afterEach(async () => {
    await api?.close();
    api = undefined;
  });

  async function run(spec: Partial<SwarmImagesInputs> & { socket?: string } = {}, nodeId = NODE) {
    const input = { project: PROJECT, repository: REPO, keepImages: 1, serving: registry(6), previous: registry(5), service: SERVICE, socket: api!.socket, ...spec };
    // Not as root, not confined: prctl(PR_SET_NO_NEW_PRIVS) needs no privilege.
    const res = await python(["-I", "-B", SCRIPT, JSON.stringify(input)], "", { NODE_ID: nodeId });
    return { ...res, answer: parseAnswer(res.stdout.split("\n")) };
  }

  it("tags the serving image and the rollback target, keeps them and the newest keepImages, removes the rest with the containers of the service's finished tasks", async () => {
    // 6 serves (pulled, not tagged yet), 5 is the target (untagged: it ran here only after a task moved
    // here), 4, 3, 2 and 1 are older releases; the service's finished tasks ran 4 and 3, a task of it
    // still running ran 2, another service's finished task ran 1.
    api = await startFakeDockerApi(
      NODE,
      [pulled(6, []), pulled(5, []), pulled(4), pulled(3), pulled(2), pulled(1)],
      [task(1, 6, "running"), task(2, 4, "exited"), task(3, 3, "dead"), task(4, 2, "running"), task(5, 1, "exited", "other-app")],
    );
    const { code, answer, stderr } = await run();
    expect(code, stderr).toBe(0);
    expect(answer).toEqual({ node: NODE, kept: [id(5), id(6)], removed: [id(3), id(4)], held: [id(1), id(2)] });
    expect(api.images.map((i) => [i.id, i.tags])).toEqual([
      [id(6), [stackTag(6)]],
      [id(5), [stackTag(5)]],
      [id(2), []],
      [id(1), []],
    ]);
    // The running tasks and the other service's container stay (a running one is not even asked for);
    // the stack's tag on 2 and 1 went, the images stay with the containers that use them.
    expect(api.containers.map((c) => c.id)).toEqual(["c1", "c4", "c5"]);
    expect(api.calls.filter((c) => c.startsWith("DELETE /containers/"))).toEqual(["DELETE /containers/c3", "DELETE /containers/c2"]);
  });

  it("an image another stack still tags keeps that tag and its containers; only the stack's own tag goes", async () => {
    const shared = pulled(3, [stackTag(3), `bd-prod-images:${id(3).slice(7, 19)}`]);
    api = await startFakeDockerApi(NODE, [pulled(6, []), shared], [task(1, 3, "exited")]);
    const { answer } = await run({ previous: undefined });
    expect(answer).toEqual({ node: NODE, kept: [id(6)], removed: [], held: [id(3)] });
    expect(shared.tags).toEqual([`bd-prod-images:${id(3).slice(7, 19)}`]);
    expect(api.containers.map((c) => c.id)).toEqual(["c1"]);
  });

  it("touches no image without the project's label, whatever tags it carries, and tags no foreign serving image", async () => {
    const foreign: FakeImage = { ...pulled(2), labels: { "backend-delivery.project": "someone-else" } };
    const serving: FakeImage = { ...pulled(6, []), labels: {} };
    api = await startFakeDockerApi(NODE, [serving, foreign, pulled(1)], []);
    const { answer } = await run({ previous: undefined });
    expect(answer).toEqual({ node: NODE, kept: [id(1), id(6)], removed: [], held: [] });
    expect(serving.tags).toEqual([]);
    expect(foreign.tags).toEqual([stackTag(2)]);
  });

  it("refuses a socket of another node's engine, before anything: exit 1 and the reason as its answer", async () => {
    api = await startFakeDockerApi("node-manager", [pulled(6), pulled(1)], []);
    const { code, answer } = await run({}, NODE);
    expect(code).toBe(1);
    expect(answer).toEqual({ node: NODE, error: `RuntimeError: the Docker socket ${api.socket} belongs to node node-manager, not to node ${NODE}` });
    expect(api.calls).toEqual(["GET /info"]);
  });

  it("an engine error is the node's answer too, with the call that failed", async () => {
    api = await startFakeDockerApi(NODE, [pulled(6)], []);
    api.fail = "GET /images/json";
    const { code, answer } = await run();
    expect(code).toBe(1);
    expect(answer).toEqual({ node: NODE, error: "RuntimeError: GET /images/json: HTTP 500: engine failure" });
  });
});

describe("the job", () => {
  const inputs: SwarmImagesInputs = {
    project: "bd",
    repository: "bd-staging-images",
    keepImages: 2,
    service: "bd-staging-app",
    serving: `registry.example:5000/bd/backend@${id(6)}`,
    previous: `registry.example:5000/bd/backend@${id(5)}`,
    planned: [],
    labels: { "backend-delivery.stack": "staging", "backend-delivery.environment": "staging" },
  };

  it("runs once on every node but the excluded ones, in the serving image, as confined root with the node's socket and nothing else", () => {
    const spec = jobSpec(inputs, "bd-staging-app-prune-abc123", ["n3", "n4"]) as {
      Name: string;
      Labels: Record<string, string>;
      Mode: unknown;
      TaskTemplate: { ContainerSpec: Record<string, unknown> & { Command: string[] }; [key: string]: unknown };
    };
    const labels = { ...inputs.labels, [JOB_LABEL]: "bd-staging-app", "backend-delivery.role": "prune-job" };
    expect(spec.Name).toBe("bd-staging-app-prune-abc123");
    expect(spec.Labels).toEqual(labels);
    // `global`, not `global-job`: Docker 20.10 never removes a job's tasks, not even with its service (moby/moby#44312).
    expect(spec.Mode).toEqual({ Global: {} });
    const { Command, ...container } = spec.TaskTemplate.ContainerSpec;
    expect(container).toEqual({
      Image: inputs.serving,
      Env: ["NODE_ID={{.Node.ID}}"],
      User: "0:0",
      ReadOnly: true,
      CapabilityDrop: ["ALL"],
      Mounts: [{ Type: "bind", Source: NODE_DOCKER_SOCKET, Target: NODE_DOCKER_SOCKET }],
      Labels: labels,
    });
    expect(Command.slice(0, 4)).toEqual(["/opt/venv/bin/python", "-I", "-B", "-c"]);
    expect(Command[4]).toContain("def prune_plan(");
    expect(JSON.parse(Command[5]!)).toEqual({ project: "bd", repository: "bd-staging-images", keepImages: 2, serving: inputs.serving, previous: inputs.previous, service: "bd-staging-app" });
    expect(Object.keys(spec.TaskTemplate).sort()).toEqual(["ContainerSpec", "LogDriver", "Placement", "Resources", "RestartPolicy"]);
    expect(spec.TaskTemplate).toMatchObject({
      Resources: { Limits: { MemoryBytes: 64 * 1024 * 1024, NanoCPUs: 500_000_000, Pids: 32 } },
      RestartPolicy: { Condition: "none" },
      Placement: { Constraints: ["node.id!=n3", "node.id!=n4"] },
      LogDriver: { Name: "json-file", Options: { "max-size": "1m" } },
    });
  });

  it("is no workload of the policy pack's: the resource's inputs are not taken for a release container", () => {
    expect(kindOf(DYNAMIC, { ...inputs })).toBeUndefined();
  });

  it("reads a node's answer from the last JSON line of its task's log", () => {
    expect(parseAnswer(["starting", '{"node": "n1", "kept": ["a"], "removed": [], "held": []}'])).toEqual({ node: "n1", kept: ["a"], removed: [], held: [] });
    expect(parseAnswer(['{"node": "n1", "error": "RuntimeError: x"}', "Traceback ..."])).toEqual({ node: "n1", error: "RuntimeError: x" });
    expect(parseAnswer(["[1, 2]", "no answer"])).toBeUndefined();
  });

  it("targets the nodes where a task of the service ran the serving image and that can take a task now", async () => {
    const ran = (node: string, image: string, container = true) => ({ ID: `t-${node}-${image}`, NodeID: node, Status: { State: "running", ContainerStatus: container ? { ContainerID: "c" } : {} }, Spec: { ContainerSpec: { Image: image } } });
    const node = (ID: string, State = "ready", Availability = "active") => ({ ID, Status: { State }, Spec: { Availability } });
    const docker = {
      listTasks: async () => [ran("a", inputs.serving), ran("b", inputs.serving), ran("c", "old"), ran("d", inputs.serving, false), ran("e", inputs.serving)],
      listNodes: async () => [node("a"), node("b", "down"), node("c"), node("d"), node("e", "ready", "drain"), node("f")],
    } as unknown as Docker;
    expect(await targetNodes(docker, "bd-staging-app", inputs.serving)).toEqual({ targets: ["a"], unreached: ["b", "e"], others: ["b", "c", "d", "e", "f"] });
  });

  it("runs again when what decides the plan changes, or when the preview planned a removal; not for a new connection option", async () => {
    const diff = (news: Partial<SwarmImagesInputs>) => swarmImagesProvider.diff!("id", { ...inputs, nodes: [], unreached: [] }, { ...inputs, ...news });
    expect(await diff({})).toMatchObject({ changes: false });
    expect(await diff({ dockerSshOpts: ["-i", "key"] })).toMatchObject({ changes: false });
    for (const change of [{ serving: "x" }, { previous: undefined }, { keepImages: 3 }, { service: "s" }, { planned: [id(1)] }, { dockerHost: "ssh://m" }]) {
      expect(await diff(change), JSON.stringify(change)).toMatchObject({ changes: true, replaces: [] });
    }
  });
});
