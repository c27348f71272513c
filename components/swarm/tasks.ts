/**
 * The Swarm manager's view of a service and its tasks, through the Docker API of the manager alone:
 * a task's state, error, node, container and address on the stack's network are all known to the
 * manager, wherever the task runs, and so are its logs (`GET /tasks/{id}/logs`). Workers need not be
 * reachable from where `pulumi` runs.
 *
 * It travels with the serialized rollout provider (rollout.ts): plain functions and `require`d
 * packages only.
 */
import type Docker from "dockerode";
import { demuxDockerStream } from "../docker/client";

/**
 * The release a container spec runs: its image and the names of its secrets and settings config,
 * each of which is new whenever its content is. Read off the spec itself, so it needs no marker of its
 * own (a container label would do, but the Docker provider replaces a service, delete-first, when one
 * changes; an environment variable would too, but the provider writes the environment in a random
 * order, and Swarm restarts every task when the order changes).
 */
export function specRelease(image: string, secretNames: readonly string[], configNames: readonly string[]): string {
  return [image, [...secretNames].sort().join(","), [...configNames].sort().join(",")].join(" ");
}

/** The fields of a container spec that {@link specRelease} reads. */
interface RawContainerSpec {
  Image?: string;
  Secrets?: { SecretName?: string }[] | null;
  Configs?: { ConfigName?: string }[] | null;
}

/** {@link specRelease} of a container spec as the engine reports it. */
export function releaseOf(spec: RawContainerSpec | undefined): string | undefined {
  if (spec?.Image === undefined) return undefined;
  return specRelease(spec.Image, (spec.Secrets ?? []).map((s) => s.SecretName ?? ""), (spec.Configs ?? []).map((c) => c.ConfigName ?? ""));
}

/** One task as the manager reports it. */
export interface TaskView {
  id: string;
  /** `<service>.<slot>`, as `docker service ps` names it. */
  slot: number;
  nodeId: string;
  /** Swarm's task state: new, pending, assigned, accepted, preparing, starting, running, complete, shutdown, failed, rejected, ... */
  state: string;
  desiredState: string;
  /** Swarm's reason for the state, e.g. `task: non-zero exit (78)` or `no suitable node (...)`. */
  error?: string;
  exitCode?: number;
  /** The task's container; its first 12 characters are the container's host name, which `/version` reports. */
  containerId?: string;
  /** The task's address on `network` (no prefix length). */
  address?: string;
  /** {@link specRelease} of the task's own spec. */
  release?: string;
  /** When the task reached its state. */
  since: string;
}

/** The fields of the engine's task document that are read here. */
interface RawTask {
  ID: string;
  Slot?: number;
  NodeID?: string;
  DesiredState?: string;
  Status?: { State?: string; Err?: string; Timestamp?: string; ContainerStatus?: { ContainerID?: string; ExitCode?: number } };
  Spec?: { ContainerSpec?: RawContainerSpec };
  NetworksAttachments?: { Network?: { Spec?: { Name?: string } }; Addresses?: string[] }[];
}

/** The tasks of `service` (by name), as the manager knows them; `network` picks the address. */
export async function listServiceTasks(docker: Docker, service: string, network: string): Promise<TaskView[]> {
  const raw = (await docker.listTasks({ filters: { service: [service] } })) as RawTask[];
  return raw.map((task) => {
    const attachment = task.NetworksAttachments?.find((a) => a.Network?.Spec?.Name === network);
    const address = attachment?.Addresses?.[0]?.split("/")[0];
    const status = task.Status ?? {};
    const release = releaseOf(task.Spec?.ContainerSpec);
    return {
      id: task.ID,
      slot: task.Slot ?? 0,
      nodeId: task.NodeID ?? "",
      state: status.State ?? "unknown",
      desiredState: task.DesiredState ?? "unknown",
      since: status.Timestamp ?? "",
      ...(status.Err === undefined || status.Err === "" ? {} : { error: status.Err }),
      ...(status.ContainerStatus?.ExitCode === undefined ? {} : { exitCode: status.ContainerStatus.ExitCode }),
      ...(status.ContainerStatus?.ContainerID ? { containerId: status.ContainerStatus.ContainerID } : {}),
      ...(address === undefined ? {} : { address }),
      ...(release === undefined ? {} : { release }),
    };
  });
}

/** The last `lines` log lines of a task, stdout and stderr interleaved, from the manager. */
export async function taskLogs(docker: Docker, taskId: string, lines: number): Promise<string[]> {
  // dockerode has Task.logs; its types do not list it.
  const task = docker.getTask(taskId) as unknown as { logs(options: Record<string, unknown>): Promise<unknown> };
  const raw = await task.logs({ stdout: true, stderr: true, follow: false, tail: lines });
  const buffer = Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw));
  return demuxDockerStream(buffer, false)
    .both.split(/\r?\n/)
    .filter((line) => line.length > 0)
    .slice(-lines);
}

/** What the manager says about the service's last update. */
export interface ServiceView {
  id: string;
  /** {@link specRelease} of the service's current spec (after a rollback: the previous one's). */
  release?: string;
  /** Swarm's update state: updating, paused, completed, rollback_started, rollback_paused, rollback_completed; absent before the first update. */
  updateState?: string;
  updateMessage?: string;
}

/** The service `name` as the manager reports it. */
export async function inspectService(docker: Docker, name: string): Promise<ServiceView> {
  const info = (await docker.getService(name).inspect()) as {
    ID: string;
    Spec?: { TaskTemplate?: { ContainerSpec?: RawContainerSpec } };
    UpdateStatus?: { State?: string; Message?: string };
  };
  const release = releaseOf(info.Spec?.TaskTemplate?.ContainerSpec);
  return {
    id: info.ID,
    ...(release === undefined ? {} : { release }),
    ...(info.UpdateStatus?.State ? { updateState: info.UpdateStatus.State } : {}),
    ...(info.UpdateStatus?.Message ? { updateMessage: info.UpdateStatus.Message } : {}),
  };
}

/**
 * Makes the service's current spec its previous one too, once a release has converged and been
 * proven: Swarm refuses to delete a secret that the previous spec still names, and the rotated-out
 * secrets are deleted at the end of the update. Swarm restarts nothing (the task template is the
 * same), and its automatic rollback of the next update still goes back to this release; only a
 * manual `docker service rollback` has nothing left to go back to (`npm run rollback` does that).
 */
export async function forgetPreviousSpec(docker: Docker, name: string): Promise<void> {
  const service = docker.getService(name);
  const info = (await service.inspect()) as { Version?: { Index?: number }; Spec?: unknown; PreviousSpec?: unknown };
  if (info.PreviousSpec === undefined || info.Version?.Index === undefined) return;
  // Version in the query, the spec as the body: the engine keeps the registry credentials it holds.
  await service.update({ _query: { version: info.Version.Index }, _body: info.Spec });
}
