/**
 * A real two-node Docker Swarm for tests and benchmarks: this machine's engine as the manager, and
 * a second `dockerd` as the worker in a network namespace of its own, joined over a veth pair with
 * private addresses of this run's own. Privileged Docker-in-Docker is refused on these machines;
 * a second engine in a network namespace is not (`nsenter --net=`: `ip netns exec` would remount
 * /sys and hide the cgroup mounts). It shares the host's file system, so it reads the registry CAs
 * in /etc/docker/certs.d like the host's engine does, and reaches the host at the manager's address.
 * Its storage driver is overlay2 on a data root under the system temp dir (`TEST_SWARM_STORAGE_DRIVER`
 * names another, e.g. vfs where the temp dir cannot hold overlay mounts). It runs in a mount namespace
 * of its own too, where its socket is bound at /var/run/docker.sock: a container on the worker that
 * mounts the node's socket (the image retention job) reaches the worker's engine, as on a real node,
 * not the host's.
 *
 * Everything it makes is named `bdsw-<hex>` (the manager node also carries the label
 * `backend-delivery.test-swarm`), which is how {@link removeLeftoverSwarms} finds what a crashed run
 * left, and `stop()` undoes all of it: both nodes leave the swarm, the engine stops, the namespace,
 * the veth pair and the folders go. The host's engine is never left in swarm mode by a swarm of ours,
 * and one that is in a swarm of someone else's is refused, never touched. Nor is a test swarm whose
 * run is still going (another worktree's, on a shared machine): its folder names the process that
 * started it, and while that process lives, {@link startSwarm} refuses and says to retry later.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { releaseOf } from "../components/swarm/tasks";
import { docker, type DockerOptions, type DockerResult } from "./docker";
import { waitFor } from "./wait";

/** The worker engine's storage driver: overlay2 unless `TEST_SWARM_STORAGE_DRIVER` names another. */
export const WORKER_STORAGE_DRIVER = process.env.TEST_SWARM_STORAGE_DRIVER ?? "overlay2";

/** The label on the manager node that marks a swarm as this harness's own. */
export const TEST_SWARM_LABEL = "backend-delivery.test-swarm";
const PREFIX = "bdsw";

/** A running two-node swarm. */
export interface TestSwarm {
  /** The manager's address on the veth pair: where the worker, and its tasks, reach this host. */
  managerAddress: string;
  workerAddress: string;
  managerNodeId: string;
  workerNodeId: string;
  /** The worker engine's `DOCKER_HOST` (a unix socket of its own). */
  workerHost: string;
  /** `docker` against the worker's engine. */
  worker(args: readonly string[], options?: DockerOptions): Promise<DockerResult>;
  /** Leaves the swarm on both nodes and removes the worker, its namespace, veth pair and folders. Safe to call twice. */
  stop(): Promise<void>;
}

function run(command: string, args: readonly string[], allowFailure = false): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", (error) => reject(new Error(`cannot run ${command}: ${error.message}`)));
    child.on("close", (code) => {
      const result = { code: code ?? -1, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
      if (result.code !== 0 && !allowFailure) reject(new Error(`${command} ${args.join(" ")} exited ${result.code}: ${result.stderr.trim()}`));
      else resolve(result);
    });
  });
}

const stateDir = (id: string) => path.join(os.tmpdir(), `${PREFIX}-${id}`);
const netnsOf = (id: string) => `${PREFIX}-${id}`;
const hostVeth = (id: string) => `${PREFIX}${id}h`;

/** Whether process `pid` exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The pid in a pidfile, or undefined. */
function pidIn(file: string): number | undefined {
  const pid = fs.existsSync(file) ? Number(fs.readFileSync(file, "utf8").trim()) : NaN;
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * Why the test swarm `id` is another run's that is still going, or undefined when it is a crashed
 * run's leftover: the process that started it lives (its `owner.pid`), or, for a swarm started by a
 * version of this harness that wrote none, its worker engine still runs.
 */
function liveRun(id: string): string | undefined {
  const dir = stateDir(id);
  const owner = pidIn(path.join(dir, "owner.pid"));
  if (owner !== undefined) return owner !== process.pid && alive(owner) ? `started by process ${owner}, which is still running` : undefined;
  const engine = pidIn(path.join(dir, "docker.pid"));
  return engine !== undefined && alive(engine) ? `its worker engine (pid ${engine}) is running, and it names no owner` : undefined;
}

/** Whether the host engine is in a swarm, whether that swarm is one of ours, and which (its id). */
async function hostSwarm(): Promise<{ active: boolean; ours: boolean; id?: string }> {
  const state = (await docker(["info", "--format", "{{.Swarm.LocalNodeState}}"])).stdout.trim();
  if (state !== "active" && state !== "pending" && state !== "error" && state !== "locked") return { active: false, ours: false };
  const labels = await docker(["node", "inspect", "self", "--format", "{{json .Spec.Labels}}"], { allowFailure: true });
  const id = labels.code === 0 ? (JSON.parse(labels.stdout.trim() || "{}") as Record<string, string> | null)?.[TEST_SWARM_LABEL] : undefined;
  return { active: true, ours: id !== undefined, ...(id === undefined ? {} : { id }) };
}

/** Stops the worker engine whose pidfile is in `dir`, and waits until it is gone. */
async function stopEngine(dir: string): Promise<void> {
  const pid = pidIn(path.join(dir, "docker.pid"));
  if (pid === undefined || !alive(pid)) return;
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 150 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (alive(pid)) process.kill(pid, "SIGKILL");
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
}

/** Removes a folder an engine ran from, unmounting what it may have left mounted below it. */
async function removeStateDir(dir: string): Promise<void> {
  const mounts = fs
    .readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[1] ?? "")
    .filter((point) => point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const point of mounts) await run("umount", ["-l", point], true);
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Undoes one swarm of ours by its id: worker engine, namespace, veth pair, folder. */
async function removeWorker(id: string): Promise<void> {
  const dir = stateDir(id);
  const socket = path.join(dir, "docker.sock");
  if (fs.existsSync(socket)) await docker(["-H", `unix://${socket}`, "swarm", "leave", "--force"], { allowFailure: true, timeoutMs: 30_000 });
  await stopEngine(dir);
  await run("ip", ["netns", "delete", netnsOf(id)], true);
  await run("ip", ["link", "delete", hostVeth(id)], true);
  await removeStateDir(dir);
}

/**
 * Removes what an earlier, crashed run of this harness left: the host's engine out of a swarm of
 * ours, and every worker named `bdsw-*` (a crashed run cannot still be running: tests of one machine
 * start one swarm at a time).
 */
export async function removeLeftoverSwarms(): Promise<void> {
  const namespaces = (await run("ip", ["netns", "list"], true)).stdout.split("\n").map((l) => l.split(" ")[0] ?? "");
  const dirs = fs.readdirSync(os.tmpdir()).filter((f) => f.startsWith(`${PREFIX}-`));
  const ids = new Set([...namespaces, ...dirs].filter((n) => n.startsWith(`${PREFIX}-`)).map((n) => n.slice(PREFIX.length + 1)));
  for (const id of ids) {
    const why = liveRun(id);
    if (why !== undefined) {
      throw new Error(`another run's test swarm ${PREFIX}-${id} is up on this machine (${why}); it is left alone: run these tests again once it is done`);
    }
  }
  const host = await hostSwarm();
  if (host.active && host.ours) {
    const why = host.id === undefined ? undefined : liveRun(host.id);
    if (why !== undefined) throw new Error(`this machine's Docker engine is in another run's test swarm ${PREFIX}-${host.id} (${why}); it is left alone: run these tests again once it is done`);
    await docker(["swarm", "leave", "--force"], { allowFailure: true, timeoutMs: 60_000 });
  }
  for (const id of ids) await removeWorker(id);
}

/** A /30 of 10.213.0.0/16 that no interface of this machine uses (Swarm's own overlays take 10.0.0.0/8 from 10.0.0.0 up). */
async function freeSubnet(): Promise<string> {
  const used = (await run("ip", ["-4", "-o", "addr"], true)).stdout;
  for (let i = 0; i < 50; i++) {
    const base = `10.213.${randomBytes(1)[0]!}.${4 * (randomBytes(1)[0]! % 63)}`;
    const prefix = base.slice(0, base.lastIndexOf(".") + 1);
    if (!used.includes(` ${prefix}`)) return base;
  }
  throw new Error("no free /30 in 10.213.0.0/16 for the test swarm");
}

/** Starts the swarm; call `stop()` when done (in `afterAll`, so a failed test cleans up too). */
export async function startSwarm(): Promise<TestSwarm> {
  await removeLeftoverSwarms();
  const host = await hostSwarm();
  if (host.active) {
    throw new Error("this machine's Docker engine is already in a swarm that is not a test swarm; the tests leave it alone. Leave it (`docker swarm leave`) to run them.");
  }
  const id = randomBytes(3).toString("hex");
  const dir = stateDir(id);
  const ns = netnsOf(id);
  const [h, w] = [hostVeth(id), `${PREFIX}${id}w`];
  const base = await freeSubnet();
  const [a, b, c, d] = base.split(".").map(Number) as [number, number, number, number];
  const managerAddress = `${a}.${b}.${c}.${d + 1}`;
  const workerAddress = `${a}.${b}.${c}.${d + 2}`;
  const socket = path.join(dir, "docker.sock");
  // `swarm init` makes the bridge docker_gwbridge, which `swarm leave` keeps: removed again if it is ours.
  const hadGatewayBridge = (await docker(["network", "inspect", "docker_gwbridge"], { allowFailure: true })).code === 0;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await removeWorker(id);
    // Only this run's own swarm: another run may have taken the engine over since (see liveRun).
    const after = await hostSwarm();
    if (after.active && after.id === id) await docker(["swarm", "leave", "--force"], { allowFailure: true, timeoutMs: 60_000 });
    if (!hadGatewayBridge) await docker(["network", "rm", "docker_gwbridge"], { allowFailure: true });
  };

  try {
    fs.mkdirSync(path.join(dir, "data"), { recursive: true, mode: 0o700 });
    fs.mkdirSync(path.join(dir, "exec"), { recursive: true, mode: 0o700 });
    // Whose swarm this is, for as long as this process runs (see liveRun).
    fs.writeFileSync(path.join(dir, "owner.pid"), `${process.pid}\n`);
    // Its own (empty) daemon.json: the host's may name sockets or settings that are the host engine's.
    fs.writeFileSync(path.join(dir, "daemon.json"), "{}\n");
    await run("ip", ["netns", "add", ns]);
    await run("ip", ["link", "add", h, "type", "veth", "peer", "name", w]);
    await run("ip", ["link", "set", w, "netns", ns]);
    await run("ip", ["addr", "add", `${managerAddress}/30`, "dev", h]);
    await run("ip", ["link", "set", h, "up"]);
    const inNs = (args: string[]) => run("nsenter", [`--net=/var/run/netns/${ns}`, ...args]);
    await inNs(["ip", "addr", "add", `${workerAddress}/30`, "dev", w]);
    await inNs(["ip", "link", "set", w, "up"]);
    await inNs(["ip", "link", "set", "lo", "up"]);
    await inNs(["ip", "route", "add", "default", "via", managerAddress]);

    const log = fs.openSync(path.join(dir, "dockerd.log"), "a");
    const dockerd = [
      "dockerd",
      "--config-file", path.join(dir, "daemon.json"),
      "--data-root", path.join(dir, "data"),
      "--exec-root", path.join(dir, "exec"),
      "-H", `unix://${socket}`,
      "--pidfile", path.join(dir, "docker.pid"),
      "--storage-driver", WORKER_STORAGE_DRIVER,
    ].map((arg) => `'${arg}'`).join(" ");
    // In a private mount namespace, once the engine listens, its socket is bound over
    // /var/run/docker.sock there: the engine's containers see that one as the node's socket. The shell
    // waits for the engine, which stop() ends by its pidfile, and the namespace goes with them.
    const script = `${dockerd} & pid=$!; while [ ! -S '${socket}' ] && kill -0 $pid 2>/dev/null; do sleep 0.1; done; ` +
      `mount --bind '${socket}' /var/run/docker.sock; wait $pid`;
    const engine = spawn("nsenter", [`--net=/var/run/netns/${ns}`, "unshare", "--mount", "--propagation", "private", "sh", "-c", script], { detached: true, stdio: ["ignore", log, log] });
    engine.unref();
    fs.closeSync(log);
    const worker = (args: readonly string[], options: DockerOptions = {}) => docker(["-H", `unix://${socket}`, ...args], options);
    await waitFor(async () => ((await worker(["info", "--format", "{{.ID}}"], { allowFailure: true })).code === 0 ? true : undefined), {
      timeoutMs: 60_000,
      intervalMs: 250,
      what: `the worker engine (log: ${path.join(dir, "dockerd.log")})`,
    });

    await docker(["swarm", "init", "--advertise-addr", managerAddress, "--listen-addr", `${managerAddress}:2377`]);
    const managerNodeId = (await docker(["info", "--format", "{{.Swarm.NodeID}}"])).stdout.trim();
    await docker(["node", "update", "--label-add", `${TEST_SWARM_LABEL}=${id}`, managerNodeId]);
    const token = (await docker(["swarm", "join-token", "-q", "worker"])).stdout.trim();
    await worker(["swarm", "join", "--token", token, "--advertise-addr", workerAddress, `${managerAddress}:2377`], { timeoutMs: 60_000 });
    const workerNodeId = (await worker(["info", "--format", "{{.Swarm.NodeID}}"])).stdout.trim();
    await waitFor(
      async () => {
        const states = (await docker(["node", "ls", "--format", "{{.Status}}"])).stdout.trim().split("\n");
        return states.length === 2 && states.every((s) => s === "Ready") ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: "both nodes of the test swarm to be ready" },
    );
    return { managerAddress, workerAddress, managerNodeId, workerNodeId, workerHost: `unix://${socket}`, worker, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A running task of a service, as the manager reports it. */
export interface RunningTask {
  id: string;
  node: string;
  container: string;
  /** The task's release (components/swarm/tasks.ts `releaseOf` its spec). */
  release: string;
  image: string;
}

interface InspectedTask {
  ID: string;
  NodeID: string;
  Status: { State: string; Timestamp: string; ContainerStatus?: { ContainerID?: string } };
  Spec: { ContainerSpec: Parameters<typeof releaseOf>[0] & { Image: string } };
}

/** Every task of `service` the manager still lists (running or not). */
async function inspectTasks(service: string, desiredRunning: boolean): Promise<InspectedTask[]> {
  const filter = desiredRunning ? ["--filter", "desired-state=running"] : [];
  const ids = (await docker(["service", "ps", "-q", ...filter, service])).stdout.split("\n").filter((l) => l !== "");
  if (ids.length === 0) return [];
  return JSON.parse((await docker(["inspect", "--type", "task", ...ids])).stdout) as InspectedTask[];
}

/** The tasks of `service` that run now. */
export async function runningTasks(service: string): Promise<RunningTask[]> {
  return (await inspectTasks(service, true))
    .filter((t) => t.Status.State === "running")
    .map((t) => ({ id: t.ID, node: t.NodeID, container: t.Status.ContainerStatus?.ContainerID ?? "", release: releaseOf(t.Spec.ContainerSpec) ?? "", image: t.Spec.ContainerSpec.Image }));
}

/** When the first task of `service` whose release is not `serving` failed (ms since the epoch), from the manager's task history. */
export async function firstFailedTask(service: string, serving: string): Promise<number | undefined> {
  const failed = (await inspectTasks(service, false))
    .filter((t) => releaseOf(t.Spec.ContainerSpec) !== serving && t.Status.State === "failed")
    .map((t) => Date.parse(t.Status.Timestamp));
  return failed.length === 0 ? undefined : Math.min(...failed);
}
