/**
 * Waits for Swarm to finish rolling a service to a release, and tells a failed rollout by its own
 * cause. Swarm does the rollout (start-first, health-gated, rolled back on failure); this only
 * watches, through the manager's view of the service and its tasks (tasks.ts), and adds what Swarm
 * lacks: a deadline (its updater waits for a pending task forever) and the failed task's own error
 * line, read from the task's status and logs.
 *
 * `assess` is the decision, pure; `awaitConvergence` polls it. Both travel with the serialized
 * rollout provider: plain functions only.
 */
import { redact } from "../redact";
import type { ServiceView, TaskView } from "./tasks";

/** The manager's answers that the wait needs; real in rollout.ts, injectable in tests. */
export interface SwarmView {
  service(): Promise<ServiceView>;
  tasks(): Promise<TaskView[]>;
  logs(taskId: string, lines: number): Promise<string[]>;
}

/** What the rollout must reach. */
export interface ConvergeOptions {
  /** The service's name, for messages. */
  service: string;
  /** The release (task template fingerprint) this update asked for. */
  release: string;
  replicas: number;
  /** Our deadline for the whole rollout. */
  timeoutSeconds: number;
  /** Pause between two looks; 500 ms unless told. */
  pollMs?: number;
  /** How long a task of the release may wait for a node that fits before the rollout counts as stuck; 20 s unless told. */
  unplacedSeconds?: number;
  /** How to give the rollout more time, in the words of whoever set the deadline. */
  timeoutHint?: string;
  /**
   * Tasks that had already failed before this rollout (a killed task, an earlier attempt at the same
   * release): history, not this rollout's failure. Filled in from the first look.
   */
  earlierFailures?: readonly string[];
}

/** Where the rollout stands after one look. */
export type Assessment =
  | { kind: "converged"; tasks: TaskView[] }
  | { kind: "waiting"; why: string }
  | { kind: "rolling-back"; failed?: TaskView }
  | { kind: "failed"; why: string; failed?: TaskView };

/** Swarm's task states after which a task never runs again. (An array: the closure serializer cannot carry a Set.) */
const ENDED: readonly string[] = ["complete", "shutdown", "failed", "rejected", "orphaned", "remove"];
/** Log lines of the failed task quoted in the error. */
export const FAILED_TASK_LOG_LINES = 20;

/** Whether a task ended in failure: Swarm says so, or its container exited non-zero. */
function failedTask(task: TaskView): boolean {
  return task.state === "failed" || task.state === "rejected" || (ENDED.includes(task.state) && task.exitCode !== undefined && task.exitCode !== 0);
}

/** The latest failed task among `tasks`, if any. */
function latestFailure(tasks: readonly TaskView[]): TaskView | undefined {
  return tasks.filter(failedTask).sort((a, b) => Date.parse(b.since) - Date.parse(a.since))[0];
}

/** One look at the service and its tasks against what the update asked for. */
export function assess(service: ServiceView, tasks: readonly TaskView[], options: ConvergeOptions, now: number): Assessment {
  const ours = tasks.filter((t) => t.release === options.release);
  // Any failure of the release explains a rollback; only a new one fails a first deploy by itself.
  const failed = latestFailure(ours);
  const freshFailure = latestFailure(ours.filter((t) => !(options.earlierFailures ?? []).includes(t.id)));
  if (service.release !== options.release) {
    // Swarm puts the previous spec back as the service's spec when it rolls back.
    if (service.updateState === "rollback_started") return { kind: "rolling-back", ...(failed === undefined ? {} : { failed }) };
    if (service.updateState === "rollback_completed" || service.updateState === "rollback_paused") {
      return { kind: "failed", why: `Swarm rolled service ${options.service} back to the release it ran before`, ...(failed === undefined ? {} : { failed }) };
    }
    return { kind: "failed", why: `service ${options.service} runs another release than this update set (was it changed outside Pulumi?)` };
  }
  if (service.updateState === "paused") {
    return { kind: "failed", why: `Swarm paused the update of ${options.service}${service.updateMessage ? `: ${service.updateMessage}` : ""}`, ...(failed === undefined ? {} : { failed }) };
  }
  // A first deploy has nothing to roll back to: Swarm restarts a failing task forever, so its first failure is the answer.
  if (service.updateState === undefined && freshFailure !== undefined) {
    return { kind: "failed", why: `a task of the new service ${options.service} failed`, failed: freshFailure };
  }
  const unplaced = ours.find(
    (t) => t.state === "pending" && t.desiredState === "running" && /no suitable node/i.test(t.error ?? "") && now - Date.parse(t.since) >= (options.unplacedSeconds ?? 20) * 1000,
  );
  if (unplaced !== undefined) {
    return {
      kind: "failed",
      why:
        `task ${options.service}.${unplaced.slot} found no node to run on for ${options.unplacedSeconds ?? 20} s (${unplaced.error ?? "pending"}); ` +
        "check service.placement (constraints, and maxReplicasPerNode: a start-first update needs room for one more task per node) and that the nodes are up and active",
    };
  }
  const running = ours.filter((t) => t.state === "running" && t.desiredState === "running");
  const others = tasks.filter((t) => t.release !== options.release && t.desiredState === "running");
  const settled = service.updateState === undefined || service.updateState === "completed";
  if (running.length === options.replicas && others.length === 0 && settled) return { kind: "converged", tasks: running.sort((a, b) => a.slot - b.slot) };
  return {
    kind: "waiting",
    why: `${running.length} of ${options.replicas} tasks of the new release running${others.length > 0 ? `, ${others.length} of the previous one still up` : ""}${service.updateState ? ` (update ${service.updateState})` : ""}`,
  };
}

/** The tasks' states in a line each, for a message. */
export function describeTasks(tasks: readonly TaskView[], release: string): string {
  return tasks
    .filter((t) => t.desiredState === "running" || !ENDED.includes(t.state))
    .map((t) => `  ${t.release === release ? "new" : "old"} task .${t.slot} on node ${t.nodeId.slice(0, 12) || "(none)"}: ${t.state}${t.error ? ` (${t.error})` : ""}`)
    .join("\n");
}

/** The error for a failed rollout: why, the failed task's own error and log lines (redacted), and what to do. */
async function failure(view: SwarmView, options: ConvergeOptions, why: string, task: TaskView | undefined, started: number): Promise<Error> {
  const lines: string[] = [`Rollout of ${options.service} failed after ${((Date.now() - started) / 1000).toFixed(1)} s: ${why}.`];
  if (task !== undefined) {
    lines.push(`Task ${options.service}.${task.slot} of the new release, on node ${task.nodeId.slice(0, 12)}: ${task.state}${task.error ? `, ${task.error}` : ""}.`);
    const logs = (await view.logs(task.id, FAILED_TASK_LOG_LINES).catch((e: unknown) => [`(logs unavailable: ${String(e)})`])).map((l) => redact(l));
    lines.push(`Last ${logs.length} log lines of that task:`, ...(logs.length > 0 ? logs.map((l) => `  | ${l}`) : ["  (no log output)"]));
  }
  lines.push("The tasks of the release that served keep serving. Fix the cause shown above (often a missing or invalid setting), then run `pulumi up` again.");
  return new Error(lines.join("\n"));
}

/** Polls until the rollout converged (the running tasks of the release) or failed (an Error naming the cause). */
export async function awaitConvergence(view: SwarmView, options: ConvergeOptions): Promise<TaskView[]> {
  const started = Date.now();
  const deadline = started + options.timeoutSeconds * 1000;
  let cause: TaskView | undefined;
  let last = "no look yet";
  let tasks: TaskView[] = [];
  let earlierFailures: string[] | undefined;
  while (Date.now() < deadline) {
    const service = await view.service();
    tasks = await view.tasks();
    earlierFailures ??= [...(options.earlierFailures ?? []), ...tasks.filter((t) => failedTask(t)).map((t) => t.id)];
    const verdict = assess(service, tasks, { ...options, earlierFailures }, Date.now());
    if (verdict.kind === "converged") return verdict.tasks;
    if (verdict.kind === "failed") throw await failure(view, options, verdict.why, verdict.failed ?? cause, started);
    if (verdict.kind === "rolling-back") {
      // Remembered: the rollback replaces the failed task, and the error names it once the old release is back.
      cause = verdict.failed ?? cause;
      last = "Swarm is rolling back";
    } else {
      last = verdict.why;
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
  throw new Error(
    `Rollout of ${options.service} did not converge within ${options.timeoutSeconds} s (last: ${last}).\n${describeTasks(tasks, options.release)}\n` +
      `Swarm goes on trying; the tasks of the release that served keep serving${options.timeoutHint ? `. To wait longer, ${options.timeoutHint}` : ""}.`,
  );
}
