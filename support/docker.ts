/**
 * A thin wrapper around the `docker` command line for integration tests and benchmarks: run a
 * command and get its output, build an image, inspect images and containers, wait for health.
 *
 * The CLI rather than the engine API, because what the tests prove is what a user can reproduce
 * by typing the same command. Every failure message carries the command and its stderr.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait";

/** The local Python base image that stands in for the official one (nothing can be pulled here). */
export const LOCAL_PYTHON_BASE = process.env.BASE_IMAGE ?? "local/python-base:3.11-bookworm";

/** The local Caddy 2 image that stands in for the official one (scripts/build-proxy-image.sh builds it). */
export const LOCAL_PROXY_IMAGE = process.env.PROXY_IMAGE ?? "local/caddy:2-bookworm";

/** The outcome of one `docker` command. */
export interface DockerResult {
  /** Exit code; -1 when the process was killed by a signal. */
  code: number;
  stdout: string;
  stderr: string;
  /** Wall-clock time of the command. */
  durationMs: number;
}

/** Options of {@link docker}. */
export interface DockerOptions {
  /** Return a non-zero exit instead of throwing. */
  allowFailure?: boolean;
  /** Extra environment for the CLI process (merged over this process's environment). */
  env?: Record<string, string>;
  /** Kill the command after this many milliseconds; 5 minutes unless told. */
  timeoutMs?: number;
  /** Written to the command's stdin (e.g. a password for `--password-stdin`); an empty stdin unless told. */
  input?: string;
}

/** Runs `docker <args>`. Throws on a non-zero exit unless `allowFailure` is set. */
export function docker(args: readonly string[], options: DockerOptions = {}): Promise<DockerResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn("docker", [...args], {
      env: { ...process.env, ...options.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    // A command that exits before reading its input breaks the pipe; its exit code says why.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.input);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 300_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run docker (is the Docker CLI installed?): ${error.message}`));
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      const result: DockerResult = {
        code: code ?? -1,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        durationMs: Date.now() - started,
      };
      if (result.code !== 0 && options.allowFailure !== true) {
        const shown = args.length > 6 ? `${args.slice(0, 6).join(" ")} ...` : args.join(" ");
        reject(new Error(`docker ${shown} exited ${result.code}: ${result.stderr.trim().slice(-2000)}`));
      } else {
        resolve(result);
      }
    });
  });
}

/**
 * Throws unless a Docker engine answers and, when given, the image exists locally. Integration
 * tests call it first so that a missing engine fails them with the fix instead of skipping them.
 */
export async function requireDockerEngine(image?: string): Promise<void> {
  const info = await docker(["info", "--format", "{{.ServerVersion}}"], { allowFailure: true });
  if (info.code !== 0) {
    throw new Error(
      `no Docker engine answers (docker info: ${info.stderr.trim()}). Start dockerd (see .ci/run) and rerun.`,
    );
  }
  if (image !== undefined) {
    const found = await docker(["image", "inspect", image], { allowFailure: true });
    if (found.code !== 0) {
      throw new Error(`image ${image} is missing. Build it with: bash scripts/build-base-image.sh && bash scripts/build-proxy-image.sh`);
    }
  }
}

/** A name that no parallel test run uses: `<prefix>-<12 hex>`, valid for images, containers, volumes. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

/** Options of {@link buildImage}. */
export interface BuildOptions {
  /** Build context directory (holds the Dockerfile). */
  context: string;
  /** Tag of the built image. */
  tag: string;
  /** `--build-arg` values; never put a secret here (build args are recorded in the image). */
  buildArgs?: Record<string, string>;
  /** Build every layer from scratch. */
  noCache?: boolean;
  /** Extra environment for the CLI process. */
  env?: Record<string, string>;
}

/** What {@link buildImage} reports. */
export interface BuildResult {
  /** `sha256:...` id of the built image. */
  imageId: string;
  /** The builder's combined progress output. */
  output: string;
  durationMs: number;
}

/**
 * Builds with the classic builder, which every engine version has and which needs no frontend
 * image (BuildKit's would have to be pulled). Its output names each step and says `Using cache`
 * for reused ones, which is what layer-reuse checks read.
 */
const BUILD_LOCK = join(tmpdir(), "backend-delivery-docker-build.lock");

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `fn` while holding a lock shared by every test worker process. Two cold builds of the same
 * Dockerfile at once both miss the cache and make two unrelated layer chains; one at a time, the
 * first makes the chain and every later build reuses it, which the layer-reuse test relies on (and
 * two cores gain nothing from parallel builds anyway). A lock left by a dead process is taken over.
 */
async function withBuildLock<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(BUILD_LOCK);
      writeFileSync(join(BUILD_LOCK, "pid"), String(process.pid));
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      let owner = Number.NaN;
      try {
        owner = Number(readFileSync(join(BUILD_LOCK, "pid"), "utf8"));
      } catch {
        // The owner is between mkdir and writing its pid: wait.
      }
      if (Number.isInteger(owner) && !processAlive(owner)) rmSync(BUILD_LOCK, { recursive: true, force: true });
      if (Date.now() > deadline) throw new Error(`waited 15 min for the docker build lock ${BUILD_LOCK}`, { cause: error });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

export async function buildImage(options: BuildOptions): Promise<BuildResult> {
  return withBuildLock(() => buildImageNow(options));
}

async function buildImageNow(options: BuildOptions): Promise<BuildResult> {
  // --force-rm: a failed step's container is removed too, so a build meant to fail leaves nothing.
  const args = ["build", "--force-rm", "--tag", options.tag];
  for (const [key, value] of Object.entries(options.buildArgs ?? {})) args.push("--build-arg", `${key}=${value}`);
  if (options.noCache === true) args.push("--no-cache");
  args.push(options.context);
  const result = await docker(args, {
    env: { DOCKER_BUILDKIT: "0", ...options.env },
    timeoutMs: 900_000,
    allowFailure: true,
  });
  const output = `${result.stdout}\n${result.stderr}`;
  if (result.code !== 0) {
    // The classic builder prints a failing step's own output on stdout: keep its tail.
    throw new Error(`docker build of ${options.context} failed (exit ${result.code}):\n${output.trim().slice(-3000)}`);
  }
  const imageId = (await docker(["image", "inspect", "--format", "{{.Id}}", options.tag])).stdout.trim();
  return { imageId, output, durationMs: result.durationMs };
}

/** The parts of `docker image inspect` the tests read. */
export interface ImageInspect {
  Id: string;
  Size: number;
  Config: {
    User: string;
    Env: string[] | null;
    Labels: Record<string, string> | null;
    Entrypoint: string[] | null;
    Cmd: string[] | null;
    WorkingDir: string;
    ExposedPorts: Record<string, object> | null;
    Healthcheck?: { Test: string[]; Interval: number; Timeout: number; StartPeriod: number; Retries: number };
  };
  RootFS: { Layers: string[] };
}

/** `docker image inspect` of one image, parsed. */
export async function inspectImage(ref: string): Promise<ImageInspect> {
  const { stdout } = await docker(["image", "inspect", ref]);
  return (JSON.parse(stdout) as ImageInspect[])[0] as ImageInspect;
}

/** The parts of `docker container inspect` the tests read. */
export interface ContainerInspect {
  Id: string;
  State: {
    Status: string;
    Running: boolean;
    ExitCode: number;
    OOMKilled: boolean;
    Health?: { Status: string; Log: { ExitCode: number; Output: string }[] };
  };
  Config: { User: string; Env: string[] };
  HostConfig: {
    ReadonlyRootfs: boolean;
    CapDrop: string[] | null;
    CapAdd: string[] | null;
    SecurityOpt: string[] | null;
    Memory: number;
    PidsLimit: number | null;
    NanoCpus: number;
    Tmpfs: Record<string, string> | null;
  };
  /** The container's ports: each exposed one, with the host ports that publish it (null: none). */
  NetworkSettings: { Ports?: Record<string, { HostIp: string; HostPort: string }[] | null> };
}

/** `docker container inspect` of one container, parsed. */
export async function inspectContainer(name: string): Promise<ContainerInspect> {
  const { stdout } = await docker(["container", "inspect", name]);
  return (JSON.parse(stdout) as ContainerInspect[])[0] as ContainerInspect;
}

/**
 * Waits until the engine reports the container `healthy`. Fails early, with the container's logs,
 * when it turns `unhealthy` or stops running.
 */
export async function waitForHealthy(name: string, timeoutMs = 60_000): Promise<ContainerInspect> {
  return waitFor(
    async () => {
      const state = await inspectContainer(name);
      const health = state.State.Health?.Status;
      if (health === "healthy") return state;
      if (!state.State.Running || health === "unhealthy") {
        const logs = await docker(["logs", "--tail", "50", name], { allowFailure: true });
        throw new FatalWaitError(
          `container ${name} is ${state.State.Status}/${health ?? "no health"} ` +
            `(exit ${state.State.ExitCode}); logs:\n${logs.stdout}${logs.stderr}`,
        );
      }
      return undefined;
    },
    { timeoutMs, intervalMs: 250, what: `container ${name} to become healthy`, fatal: isFatal },
  );
}

/** Waits for the container to stop and returns its exit code. */
export async function waitForExit(name: string, timeoutMs = 60_000): Promise<number> {
  const { stdout } = await docker(["container", "wait", name], { timeoutMs });
  return Number.parseInt(stdout.trim(), 10);
}

/** Removes containers (running or not) and their anonymous volumes; missing ones are ignored. */
export async function removeContainers(...names: string[]): Promise<void> {
  if (names.length === 0) return;
  await docker(["container", "rm", "--force", "--volumes", ...names], { allowFailure: true });
}

/** The containers, networks and volumes whose names start with `prefix` (a project's, a stack's). */
export async function namedAfter(prefix: string): Promise<string[]> {
  const names = async (args: string[]) => (await docker(args)).stdout.split("\n").filter((n) => n.startsWith(prefix));
  return [
    ...(await names(["ps", "-a", "--format", "{{.Names}}"])),
    ...(await names(["network", "ls", "--format", "{{.Name}}"])),
    ...(await names(["volume", "ls", "--format", "{{.Name}}"])),
  ];
}

/** Removes whatever a failed run left named after `prefix`: containers, then networks and volumes. */
export async function removeNamedAfter(prefix: string): Promise<void> {
  for (const name of await namedAfter(prefix).catch(() => [])) {
    await docker(["rm", "-f", name], { allowFailure: true });
    await docker(["network", "rm", name], { allowFailure: true });
    await docker(["volume", "rm", name], { allowFailure: true });
  }
}

/** Removes images by tag or id; missing ones are ignored. */
export async function removeImages(...refs: string[]): Promise<void> {
  if (refs.length === 0) return;
  await docker(["image", "rm", "--force", ...refs], { allowFailure: true });
}

/** Sizes of an image's layers from `docker history`, newest first, with the step that made each. */
export async function imageHistory(ref: string): Promise<{ id: string; createdBy: string; size: number }[]> {
  const { stdout } = await docker(["history", "--no-trunc", "--human=false", "--format", "{{json .}}", ref]);
  return stdout
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const row = JSON.parse(line) as { ID: string; CreatedBy: string; Size: string };
      return { id: row.ID, createdBy: row.CreatedBy, size: Number(row.Size) };
    });
}

class FatalWaitError extends Error {}
function isFatal(error: unknown): boolean {
  return error instanceof FatalWaitError;
}

/**
 * The host's address on Docker's default bridge: a container on any bridge network reaches the
 * host there (the engine does not always record it as the network's gateway, so the interface
 * named by the network's options is asked too).
 */
export async function dockerHostAddress(): Promise<string> {
  const format = '{{range .IPAM.Config}}{{.Gateway}}{{end}} {{index .Options "com.docker.network.bridge.name"}}';
  const [gateway, bridge] = (await docker(["network", "inspect", "bridge", "--format", format])).stdout.replace(/\n$/, "").split(" ");
  if (gateway !== undefined && /^\d+\.\d+\.\d+\.\d+$/.test(gateway)) return gateway;
  // Node lists only interfaces that are up; the bridge is down while no container uses it.
  const device = bridge !== undefined && bridge !== "" ? bridge : "docker0";
  const shown = await new Promise<string>((resolve) =>
    execFile("ip", ["-4", "-o", "addr", "show", "dev", device], (error, stdout) => resolve(error ? "" : stdout)),
  );
  const address = /\binet (\d+\.\d+\.\d+\.\d+)\//.exec(shown)?.[1];
  if (address === undefined) throw new Error(`cannot tell the host's address on Docker's bridge network (interface ${device}, via \`ip addr\`)`);
  return address;
}

/** When the container first exited (ms since the epoch) between two times (s since the epoch), from the engine's events. */
export async function firstExitOf(container: string, sinceSeconds: number, untilSeconds: number): Promise<number | undefined> {
  const events = await docker(["events", "--since", String(sinceSeconds), "--until", String(untilSeconds), "--filter", "event=die", "--filter", `container=${container}`, "--format", "{{.TimeNano}}"]);
  const first = Number(events.stdout.trim().split("\n")[0]);
  return first > 0 ? first / 1e6 : undefined;
}
