/**
 * The Swarm target's pure parts, without an engine: the rollout decision on every state Swarm
 * reports, the wait with its deadline and the failed task's own error, the manager check's verdicts,
 * the tasks' self-reports and the record that speaks for all of them, and the spec helpers.
 */
import { describe, expect, it } from "vitest";
import { canaryDatabaseUrl } from "../support/canary";
import { assess, awaitConvergence, type ConvergeOptions, type SwarmView } from "../components/swarm/converge";
import { swarmProblems } from "../components/swarm/preflight";
import { combineRecords, reportedHardening } from "../components/swarm/probe";
import { secretTags } from "../components/envMapping";
import { rolloutTimeoutSeconds, secretResourceName, tmpfsBytes } from "../components/swarm/serviceSpec";
import type { ServiceView, TaskView } from "../components/swarm/tasks";
import type { Readiness } from "../components/contract";

const NOW = Date.parse("2030-01-01T00:01:00Z");
const OPTIONS: ConvergeOptions = { service: "s-app", release: "new", replicas: 2, timeoutSeconds: 5, pollMs: 10, unplacedSeconds: 20 };

function task(slot: number, release: string, state: string, more: Partial<TaskView> = {}): TaskView {
  return { id: `t${slot}-${release}-${state}`, slot, nodeId: `node${slot}aaaaaaaaaaaa`, state, desiredState: ["running", "starting", "pending"].includes(state) ? "running" : "shutdown", release, since: "2030-01-01T00:00:30Z", ...more };
}
const whyOf = (assessment: ReturnType<typeof assess>): string => ("why" in assessment ? assessment.why : "");
const updated = (updateState?: string, release = "new"): ServiceView => ({ id: "svc", release, ...(updateState === undefined ? {} : { updateState }) });

describe("assess: where a rollout stands", () => {
  it("converged: every replica of the release running, none of the old one left, the update completed (or a first deploy)", () => {
    const tasks = [task(2, "new", "running"), task(1, "new", "running"), task(1, "old", "shutdown")];
    expect(assess(updated("completed"), tasks, OPTIONS, NOW)).toEqual({ kind: "converged", tasks: [tasks[1], tasks[0]] });
    expect(assess(updated(), tasks, OPTIONS, NOW).kind).toBe("converged");
  });

  it("waiting: an old task still up, too few new ones, or Swarm still updating", () => {
    expect(assess(updated("updating"), [task(1, "new", "running"), task(2, "old", "running")], OPTIONS, NOW)).toEqual({
      kind: "waiting",
      why: "1 of 2 tasks of the new release running, 1 of the previous one still up (update updating)",
    });
    expect(assess(updated("updating"), [task(1, "new", "running"), task(2, "new", "running")], OPTIONS, NOW).kind).toBe("waiting");
    expect(assess(updated(), [task(1, "new", "starting")], OPTIONS, NOW).kind).toBe("waiting");
  });

  it("rolling back, then rolled back: the failed task of the release is the cause", () => {
    const failed = task(1, "new", "failed", { error: "task: non-zero exit (78)", exitCode: 78 });
    expect(assess(updated("rollback_started", "old"), [failed, task(2, "old", "running")], OPTIONS, NOW)).toEqual({ kind: "rolling-back", failed });
    expect(assess(updated("rollback_completed", "old"), [failed], OPTIONS, NOW)).toEqual({
      kind: "failed",
      why: "Swarm rolled service s-app back to the release it ran before",
      failed,
    });
    expect(assess(updated("rollback_paused", "old"), [], OPTIONS, NOW).kind).toBe("failed");
  });

  it("failed: paused by Swarm, changed outside Pulumi, a first deploy whose task exited, a task no node takes", () => {
    expect(assess({ ...updated("paused"), updateMessage: "update paused due to failure" }, [], OPTIONS, NOW)).toEqual({
      kind: "failed",
      why: "Swarm paused the update of s-app: update paused due to failure",
    });
    expect(whyOf(assess(updated("completed", "someone-else"), [], OPTIONS, NOW))).toContain("changed outside Pulumi");
    const exited = task(1, "new", "shutdown", { exitCode: 78 });
    expect(assess(updated(), [exited], OPTIONS, NOW)).toEqual({ kind: "failed", why: "a task of the new service s-app failed", failed: exited });
    // A task that had failed before the rollout (a killed one) is history, not this rollout's failure.
    expect(assess(updated(), [exited, task(2, "new", "running")], { ...OPTIONS, replicas: 1, earlierFailures: [exited.id] }, NOW).kind).toBe("converged");
    const unplaced = task(2, "new", "pending", { error: "no suitable node (max replicas per node limit exceed)", since: "2030-01-01T00:00:30Z" });
    expect(whyOf(assess(updated("updating"), [unplaced], OPTIONS, NOW))).toContain("found no node to run on for 20 s (no suitable node");
    // Not yet 20 s: still waiting for a node.
    expect(assess(updated("updating"), [{ ...unplaced, since: "2030-01-01T00:00:50Z" }], OPTIONS, NOW).kind).toBe("waiting");
  });
});

/** A view that plays a script of looks, then repeats the last. */
function scripted(looks: { service: ServiceView; tasks: TaskView[] }[], logs: string[] = []): SwarmView {
  let i = 0;
  let current = looks[0]!;
  return {
    service: async () => {
      current = looks[Math.min(i++, looks.length - 1)]!;
      return current.service;
    },
    tasks: async () => current.tasks,
    logs: async () => logs,
  };
}

describe("awaitConvergence", () => {
  it("takes the failed tasks of its first look for history: a scale-up after a killed task converges", async () => {
    const killed = task(1, "new", "failed", { exitCode: 137, error: "task: non-zero exit (137)" });
    const view = scripted([
      { service: updated(), tasks: [killed, task(2, "new", "running"), task(3, "new", "pending")] },
      { service: updated(), tasks: [killed, task(2, "new", "running"), task(3, "new", "running")] },
    ]);
    expect((await awaitConvergence(view, OPTIONS)).map((t) => t.slot)).toEqual([2, 3]);
  });

  it("returns the running tasks of the release once Swarm is done", async () => {
    const done = [task(1, "new", "running"), task(2, "new", "running")];
    const view = scripted([{ service: updated("updating"), tasks: [task(1, "new", "starting"), task(2, "old", "running")] }, { service: updated("completed"), tasks: done }]);
    expect(await awaitConvergence(view, OPTIONS)).toEqual(done);
  });

  it("after Swarm's rollback, fails naming the failed task, its error and its last log lines, redacted", async () => {
    const failed = task(1, "new", "failed", { error: "task: non-zero exit (78)", exitCode: 78 });
    const view = scripted(
      [
        { service: updated("rollback_started", "old"), tasks: [failed, task(2, "old", "running")] },
        // The rollback replaced the failed task: the cause is remembered from the look before.
        { service: updated("rollback_completed", "old"), tasks: [task(1, "old", "running"), task(2, "old", "running")] },
      ],
      ["Configuration error: the backend cannot start (1 problem):", "  - LOG_LEVEL: Input should be 'DEBUG' (got 'VERBOSE')", `connecting to ${canaryDatabaseUrl("hunter2", "postgresql", "db")}`],
    );
    const error = await awaitConvergence(view, OPTIONS).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain("Rollout of s-app failed after");
    expect(message).toContain("Swarm rolled service s-app back to the release it ran before.");
    expect(message).toContain("Task s-app.1 of the new release, on node node1aaaaaaa: failed, task: non-zero exit (78).");
    expect(message).toContain("  | Configuration error: the backend cannot start (1 problem):");
    expect(message).toContain("LOG_LEVEL: Input should be 'DEBUG'");
    expect(message).not.toContain("hunter2");
    expect(message).toContain("The tasks of the release that served keep serving.");
  });

  it("gives up at its own deadline with every task's state, where Swarm would wait forever", async () => {
    const view = scripted([{ service: updated("updating"), tasks: [task(1, "new", "pending", { error: "no suitable node (1 node not available)", since: new Date().toISOString() }), task(2, "old", "running")] }]);
    const message = ((await awaitConvergence(view, { ...OPTIONS, timeoutSeconds: 0.2, timeoutHint: "raise readiness.timeoutSeconds" }).catch((e: unknown) => e)) as Error).message;
    expect(message).toContain("Rollout of s-app did not converge within 0.2 s");
    expect(message).toContain("  new task .1 on node node1aaaaaaa: pending (no suitable node (1 node not available))");
    expect(message).toContain("  old task .2 on node node2aaaaaaa: running");
    expect(message).toContain("To wait longer, raise readiness.timeoutSeconds.");
  });
});

describe("the manager check's verdicts", () => {
  const host = "ssh://deploy@server";
  it("an engine in swarm mode as a manager passes; one node needs no registry", () => {
    expect(swarmProblems({ state: "active", manager: true, managers: [], activeNodes: 1 }, host, "staging", false)).toEqual([]);
    expect(swarmProblems({ state: "active", manager: true, managers: [], activeNodes: 3 }, host, "staging", true)).toEqual([]);
  });
  it("no swarm: docker swarm init", () => {
    const [problem] = swarmProblems({ state: "inactive", manager: false, managers: [] }, host, "staging", false);
    expect(problem?.message).toBe("the Docker engine at ssh://deploy@server is not a Swarm manager (swarm state: inactive), and service.orchestrator is swarm");
    expect(problem?.fix).toContain("docker swarm init --advertise-addr <its address>");
  });
  it("a worker: the managers' addresses", () => {
    const [problem] = swarmProblems({ state: "active", manager: false, managers: ["10.1.2.3:2377"] }, host, "prod", false);
    expect(problem?.message).toContain("is a Swarm worker; services are created on a manager (managers: 10.1.2.3)");
    expect(problem?.fix).toContain("pulumi config set --stack prod docker:host ssh://<user>@<a manager>");
  });
  it("several nodes without a registry: image.registry", () => {
    const [problem] = swarmProblems({ state: "active", manager: true, managers: [], activeNodes: 2 }, host, "staging", false);
    expect(problem?.path).toEqual(["image", "registry", "server"]);
    expect(problem?.message).toContain("the swarm has 2 active nodes");
  });
});

describe("the tasks' own reports", () => {
  const prober = (status: number, body: unknown) => ({ get: async () => ({ status, body: typeof body === "string" ? body : JSON.stringify(body) }) });
  it("maps GET /hardening to the contract's hardening", async () => {
    const report = { user: "10001:10001", noNewPrivileges: true, readOnlyRootFilesystem: true, allCapabilitiesDropped: true };
    expect(await reportedHardening(prober(200, report), "http://10.0.1.5:8000")).toEqual({
      user: "10001:10001",
      readOnlyRootFilesystem: true,
      capabilitiesDropped: ["ALL"],
      noNewPrivileges: true,
    });
    expect((await reportedHardening(prober(200, { ...report, allCapabilitiesDropped: false }), "x")).capabilitiesDropped).toEqual([]);
  });
  it("refuses an image that does not report (another backend, an older image)", async () => {
    await expect(reportedHardening(prober(404, { detail: "Not Found" }), "http://10.0.1.5:8000")).rejects.toThrow("did not report the task's confinement (HTTP 404)");
    await expect(reportedHardening(prober(200, "not json"), "x")).rejects.toThrow("did not report");
  });

  const record = (over: Partial<Readiness> = {}): Readiness => ({
    ready: true,
    imageDigest: `sha256:${"a".repeat(64)}`,
    checkedAt: "2030-01-01T00:00:00.000Z",
    url: "http://10.0.1.5:8000/readyz",
    version: "1.0.0",
    hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
    ...over,
  });
  it("one record speaks for every task, with how many were ready", () => {
    const combined = combineRecords([record(), record({ url: "http://10.0.1.6:8000/readyz" })], "http://tasks.s-app:8000/readyz", 2);
    expect(combined).toMatchObject({ ready: true, url: "http://tasks.s-app:8000/readyz", version: "1.0.0", replicas: { desired: 2, ready: 2 } });
  });
  it("tasks that differ in hardening or version make no record", () => {
    const weaker = record({ hardening: { ...record().hardening, noNewPrivileges: false } });
    expect(() => combineRecords([record(), weaker], "u", 2)).toThrow("the tasks report different hardening");
    expect(() => combineRecords([record(), record({ version: "1.0.1" })], "u", 2)).toThrow("different versions: 1.0.0, 1.0.1");
    expect(() => combineRecords([], "u", 2)).toThrow("no task was probed");
  });
});

describe("spec helpers", () => {
  it("tmpfs sizes from the profile's options", () => {
    expect(tmpfsBytes("rw,noexec,nosuid,nodev,size=64m")).toBe(64 * 1024 ** 2);
    expect(tmpfsBytes("size=2g")).toBe(2 * 1024 ** 3);
    expect(tmpfsBytes("size=512")).toBe(512);
    expect(tmpfsBytes("rw,noexec")).toBeUndefined();
  });
  it("secret names leave room for Pulumi's suffix within Swarm's 64 characters; tags change with the value and the key", () => {
    const name = secretResourceName("a-very-long-project-name-and-an-even-longer-stack-name-here", "A_RATHER_LONG_SETTING_NAME", "0123456789ab");
    expect(name.length).toBeLessThanOrEqual(56);
    expect(name).toMatch(/^a-very-long-.*-A_RATHER_LONG_SETTING_NAME-0123456789ab$/);
    expect(secretResourceName("backend-delivery-staging", "SECRET_KEY", "0123456789ab")).toBe("backend-delivery-staging-SECRET_KEY-0123456789ab");
    const tags = secretTags({ X: "v1", Y: "v1" }, "k");
    expect(tags.X).toMatch(/^[0-9a-f]{12}$/);
    expect(tags.X).not.toBe(tags.Y);
    expect(secretTags({ X: "v2" }, "k").X).not.toBe(tags.X);
    expect(secretTags({ X: "v1" }, "other key").X).not.toBe(tags.X);
    expect(secretTags({ X: "v1" }, "k").X).toBe(tags.X);
  });
  it("the rollout deadline: the readiness budget and the monitor window for every batch", () => {
    expect(rolloutTimeoutSeconds({ replicas: 3, placement: { constraints: [] }, update: { parallelism: 1, monitorSeconds: 10 } }, 120)).toBe(390);
    expect(rolloutTimeoutSeconds({ replicas: 5, placement: { constraints: [] }, update: { parallelism: 2, monitorSeconds: 5 } }, 60)).toBe(195);
  });
});
