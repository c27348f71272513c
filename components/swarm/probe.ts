/**
 * Readiness of every task of a release, through the manager only: a short-lived probe container
 * on the manager, attached to the stack's overlay network, asks each task at its own address with
 * the image's Python (the same probe as the single-host target's, readiness/probe.ts), and each task
 * reports its own confinement (`GET /hardening`, what its kernel says: nothing here is copied from
 * the spec). Travels with the serialized rollout provider: plain functions only.
 */
import type Docker from "dockerode";
import type { Hardening, Readiness } from "../contract";
import { hardeningProfile, toHostConfig, type EngineHostConfig } from "../hardening";
import { IMAGE_PYTHON } from "../readiness/dockerView";
import type { ContainerView, Prober } from "../readiness/probe";
import type { SwarmView } from "./converge";
import type { TaskView } from "./tasks";

/** The label that marks a stack's probe containers, so that one an earlier run left is found again. */
export const PROBE_LABEL = "backend-delivery.probe-of";

/** What a probe container is made of. */
export interface ProbeContainerSpec {
  /** The service it probes; its containers are `<service>-probe-<hex>`. */
  service: string;
  /** An image with the backend's Python: the release's own, already on the manager. */
  image: string;
  /** The stack's overlay network (attachable). */
  network: string;
  user: string;
  hostConfig: EngineHostConfig;
  labels: Record<string, string>;
}

/** The probe's user and engine settings: the backend's hardening profile, with small limits of its own. */
export function probeConfinement(): { user: string; hostConfig: EngineHostConfig } {
  return { user: hardeningProfile.user, hostConfig: toHostConfig({ ...hardeningProfile, resources: { memoryMb: 128, cpus: 1, pids: 64 } }, "") };
}

/** Removes the probe containers of `service` that an earlier, interrupted run left behind. */
export async function removeProbes(docker: Docker, service: string): Promise<void> {
  const left = await docker.listContainers({ all: true, filters: { label: [`${PROBE_LABEL}=${service}`] } });
  await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}

/** Starts a probe container on the manager; it idles until removed (at most 15 minutes). */
export async function startProbe(docker: Docker, spec: ProbeContainerSpec): Promise<string> {
  const name = `${spec.service}-probe-${Buffer.from(crypto.getRandomValues(new Uint8Array(3))).toString("hex")}`;
  const container = await docker.createContainer({
    name,
    Image: spec.image,
    Entrypoint: [IMAGE_PYTHON, "-c", "import time; time.sleep(900)"],
    Cmd: [],
    User: spec.user,
    Labels: { ...spec.labels, [PROBE_LABEL]: spec.service },
    // No restart, no data volume: it only asks questions, and is gone after them.
    HostConfig: { ...spec.hostConfig, Mounts: [], RestartPolicy: { Name: "no" }, NetworkMode: spec.network },
    NetworkingConfig: { EndpointsConfig: { [spec.network]: {} } },
  });
  try {
    await container.start();
  } catch (error) {
    await container.remove({ force: true }).catch(() => undefined);
    throw new Error(`the probe container ${name} did not start: ${(error as Error).message}`, { cause: error });
  }
  return container.id;
}

/** Runs `work` with a probe container of `spec`'s, removed after it whatever happens. */
export async function withProbe<T>(docker: Docker, spec: ProbeContainerSpec, work: (probe: string) => Promise<T>): Promise<T> {
  const probe = await startProbe(docker, spec);
  try {
    return await work(probe);
  } finally {
    await docker.getContainer(probe).remove({ force: true }).catch(() => undefined);
  }
}

/** What `GET /hardening` answers (backend/app/api/routes/health.py). */
interface SelfReport {
  user?: unknown;
  noNewPrivileges?: unknown;
  readOnlyRootFilesystem?: unknown;
  allCapabilitiesDropped?: unknown;
}

/** A task's own report of its confinement, in the contract's terms. */
export async function reportedHardening(prober: Prober, base: string): Promise<Hardening> {
  const answer = await prober.get(`${base}/hardening`, 5000);
  let report: SelfReport;
  try {
    report = answer.status === 200 ? (JSON.parse(answer.body) as SelfReport) : {};
  } catch {
    report = {};
  }
  if (typeof report.user !== "string" || typeof report.noNewPrivileges !== "boolean" || typeof report.readOnlyRootFilesystem !== "boolean") {
    throw new Error(`${base}/hardening did not report the task's confinement (HTTP ${answer.status}); the image must be this repository's backend`);
  }
  return {
    user: report.user,
    readOnlyRootFilesystem: report.readOnlyRootFilesystem,
    capabilitiesDropped: report.allCapabilitiesDropped === true ? ["ALL"] : [],
    noNewPrivileges: report.noNewPrivileges,
  };
}

/** The probe's view of one task: its state from the manager, its logs, and its own hardening report. */
export function taskContainerView(view: SwarmView, task: TaskView, prober: Prober, base: string): ContainerView {
  return {
    async state() {
      const now = (await view.tasks()).find((t) => t.id === task.id);
      const running = now !== undefined && now.state === "running";
      return { status: running ? "running" : "exited", exitCode: now?.exitCode ?? -1, restartCount: 0 };
    },
    logs: (lines) => view.logs(task.id, lines),
    hardening: () => reportedHardening(prober, base),
  };
}

/**
 * One record for the release from the records of its tasks: ready when every task is, the facts
 * every task reported alike (a task that differs fails the check: the record speaks for all), and
 * how many replicas were ready.
 */
export function combineRecords(records: readonly Readiness[], url: string, desired: number): Readiness & { replicas: { desired: number; ready: number } } {
  const first = records[0];
  if (first === undefined) throw new Error("no task was probed");
  const same = (pick: (r: Readiness) => unknown) => records.every((r) => JSON.stringify(pick(r)) === JSON.stringify(pick(first)));
  if (!same((r) => r.hardening)) {
    throw new Error(`the tasks report different hardening: ${records.map((r) => JSON.stringify(r.hardening)).join(" / ")}`);
  }
  if (!same((r) => r.version)) throw new Error(`the tasks report different versions: ${records.map((r) => r.version).join(", ")}`);
  return {
    ready: records.every((r) => r.ready),
    imageDigest: first.imageDigest,
    checkedAt: new Date().toISOString(),
    url,
    version: first.version,
    hardening: first.hardening,
    replicas: { desired, ready: records.filter((r) => r.ready).length },
  };
}
