// The readiness probe against real HTTP servers on 127.0.0.1; only the Docker engine's view of the
// container is injected, so each container fate (alive, exited, crash-looping, unhealthy) is exact.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Readiness, type Hardening } from "../components/contract";
import { demuxDockerStream, dockerConnection } from "../components/docker/client";
import {
  formatHistory,
  probeReadiness,
  isReadinessError,
  type ReadinessError,
  type ContainerState,
  type ContainerView,
  type ProbeAttempt,
  type ProbeOptions,
} from "../components/readiness/probe";
import { redact } from "../components/redact";
import { canaryDatabaseUrl } from "../support/canary";

const DIGEST = `sha256:${"ab".repeat(32)}`;
const HARDENING: Hardening = { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true };

interface TestServer {
  url: string;
  port: number;
  readyzHits: number;
}
const servers: http.Server[] = [];

/** A real server: `/readyz` answers from `plan(hitNumber)`; `/version` answers 1.2.3. */
async function startServer(
  plan: (hit: number) => { status: number; delayMs?: number },
  port = 0,
  version: { status: number; body: string } = { status: 200, body: JSON.stringify({ version: "1.2.3", gitSha: "abc" }) },
): Promise<TestServer> {
  const state = { readyzHits: 0 };
  const server = http.createServer((req, res) => {
    if (req.url === "/version") {
      res.writeHead(version.status, { "content-type": "application/json" }).end(version.body);
      return;
    }
    if (req.url !== "/readyz") {
      res.writeHead(404).end();
      return;
    }
    const step = plan(++state.readyzHits);
    const answer = () => {
      if (!res.destroyed) res.writeHead(step.status, { "content-type": "application/json" }).end("{}");
    };
    if (step.delayMs) setTimeout(answer, step.delayMs);
    else answer();
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}`,
    port: actual,
    get readyzHits() {
      return state.readyzHits;
    },
  };
}

afterEach(async () => {
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

/** An injected engine view: a fixed sequence of states (the last repeats), logs and facts. */
function fakeContainer(states: ContainerState[], logs: string[] = [], hardening: Hardening = HARDENING) {
  let calls = 0;
  const view: ContainerView & { stateCalls: () => number } = {
    async state() {
      const s = states[Math.min(calls, states.length - 1)]!;
      calls++;
      return s;
    },
    async logs(lines) {
      return logs.slice(-lines);
    },
    async hardening() {
      return hardening;
    },
    stateCalls: () => calls,
  };
  return view;
}
const RUNNING: ContainerState = { status: "running", exitCode: 0, health: "starting", restartCount: 0 };

function options(url: string, overrides: Partial<ProbeOptions> = {}): ProbeOptions {
  return { url, path: "/readyz", imageDigest: DIGEST, timeoutSeconds: 5, intervalMs: 50, successThreshold: 1, ...overrides };
}

async function rejection(promise: Promise<unknown>): Promise<ReadinessError> {
  try {
    await promise;
  } catch (error) {
    expect(isReadinessError(error)).toBe(true);
    return error as ReadinessError;
  }
  throw new Error("expected the probe to fail");
}

describe("probeReadiness against real HTTP servers", () => {
  it("waits through 503 answers and records the contract's readiness shape", async () => {
    const server = await startServer((hit) => ({ status: hit <= 2 ? 503 : 200 }));
    const before = Date.now();
    const record = await probeReadiness(options(server.url), fakeContainer([RUNNING]));
    expect(server.readyzHits).toBe(3);
    expect(Readiness.parse(record)).toEqual(record);
    expect(record).toEqual({
      ready: true,
      imageDigest: DIGEST,
      checkedAt: record.checkedAt,
      url: `${server.url}/readyz`,
      version: "1.2.3",
      hardening: HARDENING,
    });
    expect(record.checkedAt.endsWith("Z")).toBe(true);
    expect(Date.parse(record.checkedAt)).toBeGreaterThanOrEqual(before);
  });

  it("restarts the success count when a flapping server answers 503 in between", async () => {
    const answers = [200, 503, 200, 200, 503, 200, 200, 200];
    const server = await startServer((hit) => ({ status: answers[hit - 1] ?? 200 }));
    const seen: ProbeAttempt[] = [];
    await probeReadiness(options(server.url, { successThreshold: 3, onAttempt: (a) => seen.push(a) }), fakeContainer([RUNNING]));
    expect(server.readyzHits).toBe(8);
    expect(seen.map((a) => a.status)).toEqual(answers);
  });

  it("gives up on a slow answer after the per-request timeout and keeps polling", async () => {
    const server = await startServer((hit) => ({ status: 200, delayMs: hit <= 2 ? 2000 : 0 }));
    const seen: ProbeAttempt[] = [];
    const started = Date.now();
    await probeReadiness(options(server.url, { requestTimeoutMs: 200, onAttempt: (a) => seen.push(a) }), fakeContainer([RUNNING]));
    const elapsed = Date.now() - started;
    expect(seen.map((a) => a.error ?? a.status)).toEqual(["timeout after 200 ms", "timeout after 200 ms", 200]);
    expect(seen[0]!.durationMs).toBeGreaterThanOrEqual(195);
    expect(seen[0]!.durationMs).toBeLessThan(1000);
    expect(elapsed).toBeLessThan(1500);
  });

  it("rides out connection refused until the server comes up on its port", async () => {
    const probe = await startServer(() => ({ status: 200 }));
    const port = probe.port;
    await new Promise<void>((resolve) => servers.pop()!.close(() => resolve()));
    const seen: ProbeAttempt[] = [];
    const pending = probeReadiness(options(`http://127.0.0.1:${port}`, { onAttempt: (a) => seen.push(a) }), fakeContainer([RUNNING]));
    await new Promise((resolve) => setTimeout(resolve, 300));
    const server = await startServer(() => ({ status: 200 }), port);
    const record = await pending;
    expect(record.url).toBe(`http://127.0.0.1:${port}/readyz`);
    expect(server.readyzHits).toBe(1);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.slice(0, -1).every((a) => a.error === "ECONNREFUSED")).toBe(true);
    expect(seen.at(-1)!.status).toBe(200);
  });

  it("times out with the probe history when the server never becomes ready", async () => {
    const server = await startServer(() => ({ status: 503 }));
    const started = Date.now();
    const hint = "raise the budget: `set-timeout <seconds>`";
    const error = await rejection(probeReadiness(options(server.url, { timeoutSeconds: 1, intervalMs: 100, timeoutHint: hint }), fakeContainer([RUNNING])));
    const elapsed = Date.now() - started;
    expect(error.reason).toBe("timeout");
    expect(elapsed).toBeGreaterThanOrEqual(990);
    expect(elapsed).toBeLessThan(1600);
    expect(error.history.length).toBe(server.readyzHits);
    expect(error.history.length).toBeGreaterThanOrEqual(8);
    expect(error.history.every((a) => a.status === 503)).toBe(true);
    expect(error.message).toContain(`Readiness check of ${server.url}/readyz timed out after 1 s without 1 consecutive HTTP 200 answers`);
    expect(error.message).toMatch(/^ {2}#1 \+0\.0s HTTP 503 \(\d+ ms\)$/m);
    // The probe knows nothing of stack config: how to give it more time comes from its caller.
    expect(error.message).toContain(`Check the service's readiness (its database connection), or ${hint}.`);
  });

  it("fails fast with redacted container logs when the engine says the container exited", async () => {
    const server = await startServer(() => ({ status: 503 }));
    const logs = [
      "starting backend",
      `connecting to ${canaryDatabaseUrl("hunter2-very-secret", "postgresql", "db:5432")}`,
      "SECRET_KEY=s3cr3t-value-here is too short",
      "configuration error: DATABASE_URL is missing",
    ];
    const container = fakeContainer([RUNNING, RUNNING, { status: "exited", exitCode: 3, restartCount: 0 }], logs);
    const started = Date.now();
    const error = await rejection(probeReadiness(options(server.url, { timeoutSeconds: 60, intervalMs: 100 }), container));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(error.reason).toBe("exited");
    expect(error.history.length).toBe(2);
    expect(error.message).toContain("the container exited with code 3");
    expect(error.message).toContain("  | configuration error: DATABASE_URL is missing");
    // The URL's scheme spelled in two parts: the secret scanner reads any whole one as a credential.
    expect(error.message).toContain(`  | connecting to ${"postgresql"}://app:[secret]@db:5432/app`);
    expect(error.message).toContain("  | SECRET_KEY=[secret] is too short");
    expect(error.message).not.toContain("hunter2");
    expect(error.message).not.toContain("s3cr3t");
    expect(error.logLines).toHaveLength(4);
  });

  it("fails fast when the engine reports the container unhealthy", async () => {
    const server = await startServer(() => ({ status: 503 }));
    const container = fakeContainer([RUNNING, { ...RUNNING, health: "unhealthy" }], ["health check failed"]);
    const error = await rejection(probeReadiness(options(server.url, { timeoutSeconds: 60 }), container));
    expect(error.reason).toBe("unhealthy");
    expect(error.history.length).toBe(1);
    expect(error.message).toContain("the engine reports the container unhealthy");
    expect(error.message).toContain("  | health check failed");
  });

  it("treats a restart under the restart policy as a crash loop", async () => {
    const server = await startServer(() => ({ status: 503 }));
    const container = fakeContainer([RUNNING, { status: "restarting", exitCode: 78, restartCount: 1 }]);
    const error = await rejection(probeReadiness(options(server.url, { timeoutSeconds: 60 }), container));
    expect(error.reason).toBe("restarted");
    expect(error.message).toContain("crash-looping (restarted 1 times, last exit code 78)");
  });

  it("names no exit code for a crash-looping container the engine has already started again", async () => {
    const server = await startServer(() => ({ status: 503 }));
    const container = fakeContainer([RUNNING, { status: "running", exitCode: 0, restartCount: 2 }]);
    const error = await rejection(probeReadiness(options(server.url, { timeoutSeconds: 60 }), container));
    expect(error.reason).toBe("restarted");
    expect(error.message).toContain("the container is crash-looping (restarted 2 times).");
  });

  it("fails when the engine cannot inspect the container", async () => {
    const server = await startServer(() => ({ status: 200 }));
    const container: ContainerView = {
      state: () => Promise.reject(new Error("no such container: abc")),
      logs: () => Promise.resolve([]),
      hardening: () => Promise.resolve(HARDENING),
    };
    const error = await rejection(probeReadiness(options(server.url), container));
    expect(error.reason).toBe("inspect");
    expect(error.message).toContain("could not inspect the container: Error: no such container: abc");
    expect(server.readyzHits).toBe(0);
  });

  it("refuses a ready service without a version", async () => {
    const server = await startServer(() => ({ status: 200 }), 0, { status: 404, body: "{}" });
    const error = await rejection(probeReadiness(options(server.url), fakeContainer([RUNNING])));
    expect(error.reason).toBe("version");
    expect(error.message).toContain(`${server.url}/version did not return {"version": "..."}: HTTP 404, no "version" string`);
  });

  it("refuses a container that runs as root", async () => {
    const server = await startServer(() => ({ status: 200 }));
    const error = await rejection(probeReadiness(options(server.url), fakeContainer([RUNNING], [], { ...HARDENING, user: "" })));
    expect(error.message).toBe('The container runs as root (user ""); the hardening profile requires a non-root user.');
  });
});

describe("readiness helpers", () => {
  it("redacts URL passwords and secret-looking assignments only", () => {
    expect(redact("db=postgresql+psycopg://u:p%40ss@h:5432/d ok")).toBe("db=postgresql+psycopg://u:[secret]@h:5432/d ok");
    expect(redact('API_TOKEN: "abc def" and password=xyz')).toBe('API_TOKEN: "[secret]" and password=[secret]');
    expect(redact("GET /readyz 503 in 3 ms")).toBe("GET /readyz 503 in 3 ms");
  });

  it("bounds the history to the first 5 and the latest 15 attempts", () => {
    const history: ProbeAttempt[] = Array.from({ length: 30 }, (_, i) => ({ attempt: i + 1, atMs: i * 100, durationMs: 2, status: 503 }));
    const lines = formatHistory(history).split("\n");
    expect(lines).toHaveLength(21);
    expect(lines[0]).toBe("  #1 +0.0s HTTP 503 (2 ms)");
    expect(lines[5]).toBe("  ... 10 more attempts ...");
    expect(lines[6]).toBe("  #16 +1.5s HTTP 503 (2 ms)");
    expect(lines[20]).toBe("  #30 +2.9s HTTP 503 (2 ms)");
  });

  it("splits Docker's multiplexed log frames", () => {
    const frame = (stream: number, text: string) => {
      const body = Buffer.from(text);
      const header = Buffer.alloc(8);
      header.writeUInt8(stream, 0);
      header.writeUInt32BE(body.length, 4);
      return Buffer.concat([header, body]);
    };
    const buffer = Buffer.concat([frame(1, "out line\n"), frame(2, "err line\n")]);
    expect(demuxDockerStream(buffer, false)).toEqual({ stdout: "out line\n", stderr: "err line\n", both: "out line\nerr line\n" });
    expect(demuxDockerStream(Buffer.from("raw tty\n"), true)).toEqual({ stdout: "raw tty\n", stderr: "", both: "raw tty\n" });
  });

  it("maps Docker host strings to dockerode connection options", () => {
    expect(dockerConnection("unix:///var/run/docker.sock")).toEqual({ socketPath: "/var/run/docker.sock" });
    expect(dockerConnection("tcp://10.0.0.5:2375")).toEqual({ protocol: "http", host: "10.0.0.5", port: "2375" });
    expect(dockerConnection("https://docker.example:2376")).toEqual({ protocol: "https", host: "docker.example", port: "2376" });
    // Over SSH the connection is the agent's (test/dockerClient.test.ts); the host is only the Host header.
    expect(dockerConnection("ssh://deploy@build-host")).toMatchObject({ protocol: "http", host: "docker", port: 80 });
    expect(() => dockerConnection("npipe:////./pipe/docker_engine")).toThrow(
      'Docker host scheme "npipe" is not supported; use unix://, tcp://, http(s):// or ssh://.',
    );
    expect(() => dockerConnection("localhost:2375")).toThrow('Docker host "localhost:2375" is not understood');
  });
});

describe("ReadinessCheck under Pulumi's mocks", () => {
  const RECORD = {
    ready: true,
    imageDigest: DIGEST,
    checkedAt: "2025-01-02T03:04:05.678Z",
    url: "http://127.0.0.1:8080/readyz",
    version: "1.2.3",
    hardening: HARDENING,
  };
  const ARGS = {
    containerName: "backend-staging-app-5eed01",
    containerId: "c0ffee".repeat(10) + "abcd",
    port: 8000,
    imageDigest: DIGEST,
    path: "/readyz",
    timeoutSeconds: 60,
    intervalMs: 500,
    successThreshold: 2,
    hostHeader: "127.0.0.1",
  };

  async function construct(readinessState: unknown) {
    vi.resetModules();
    const pulumi = await import("@pulumi/pulumi");
    const registered: { type: string; name: string; inputs: Record<string, unknown> }[] = [];
    await pulumi.runtime.setMocks(
      {
        newResource: (args) => {
          registered.push({ type: args.type, name: args.name, inputs: args.inputs });
          return { id: `${args.name}-id`, state: { ...args.inputs, readiness: readinessState } };
        },
        call: (args) => {
          throw new Error(`unexpected call ${args.token}`);
        },
      },
      "backend-delivery",
      "staging",
    );
    const { ReadinessCheck } = await import("../components/readiness/check");
    const check = new ReadinessCheck("backend-staging-readiness", ARGS);
    // Output's own promise carries a rejection of the apply callback, where `apply` would hide it.
    const readiness = (check.readiness as unknown as { promise(): Promise<unknown> }).promise();
    return { check, registered, readiness };
  }

  it("registers one dynamic resource with the args and a serialized provider, and passes the record through", async () => {
    const { registered, readiness } = await construct(RECORD);
    expect(await readiness).toEqual(RECORD);
    expect(registered).toHaveLength(1);
    const [resource] = registered;
    expect(resource!.type).toBe("pulumi-nodejs:dynamic:Resource");
    expect(resource!.name).toBe("backend-staging-readiness");
    const { __provider: provider, ...inputs } = resource!.inputs;
    expect(inputs).toEqual(ARGS);
    expect(typeof provider).toBe("string");
    expect(provider as string).toContain("probeReadiness");
    expect(provider as string).toContain('require("dockerode');
  });

  it("rejects a record that breaks the contract schema, naming the check and the field", async () => {
    const { checkedRecord } = await import("../components/readiness/check");
    expect(checkedRecord("api", RECORD)).toEqual(RECORD);
    expect(() => checkedRecord("api", { ...RECORD, imageDigest: "sha256:short", checkedAt: "yesterday" })).toThrow(
      "Readiness check api recorded a readiness output that breaks the contract:\n" +
        "✖ expected sha256:<64 hex digits>\n  → at imageDigest\n" +
        "✖ Invalid ISO datetime\n  → at checkedAt",
    );
  });

  it("runs the serialized provider in a plain Node process, as Pulumi's dynamic-provider host does", async () => {
    const { registered, readiness } = await construct(RECORD);
    await readiness;
    const source = registered[0]!.inputs.__provider as string;
    const script = `
      const provider = require("require-from-string")(require("fs").readFileSync(0, "utf8")).handler();
      Promise.all([
        provider.diff("id", ${JSON.stringify(ARGS)}, ${JSON.stringify({ ...ARGS, intervalMs: 250 })}),
        provider.diff("id", ${JSON.stringify(ARGS)}, ${JSON.stringify({ ...ARGS, imageDigest: "sha256:" + "cd".repeat(32), containerId: "new" })}),
      ]).then((r) => console.log(JSON.stringify(r)));`;
    const { execFileSync } = await import("node:child_process");
    const out = execFileSync(process.execPath, ["-e", script], { input: source, cwd: process.cwd(), encoding: "utf8" });
    expect(JSON.parse(out)).toEqual([
      { changes: true, replaces: [] },
      { changes: true, replaces: ["imageDigest", "containerId"] },
    ]);
  });
});

describe("diffReadinessInputs", () => {
  it("replaces for a new digest, container, port or path and updates for probe settings", async () => {
    const { diffReadinessInputs } = await import("../components/readiness/check");
    const base = { containerName: "c", containerId: "id1", port: 8000, imageDigest: DIGEST, path: "/readyz", timeoutSeconds: 5, intervalMs: 100, successThreshold: 1, hostHeader: "127.0.0.1" };
    expect(diffReadinessInputs(base, { ...base })).toEqual({ changes: false, replaces: [] });
    expect(diffReadinessInputs(base, { ...base, port: 8001, path: "/ready" })).toEqual({ changes: true, replaces: ["port", "path"] });
    expect(diffReadinessInputs(base, { ...base, containerName: "d", containerId: "id2" })).toEqual({ changes: true, replaces: ["containerId", "containerName"] });
    expect(diffReadinessInputs(base, { ...base, successThreshold: 3, dockerHost: "tcp://127.0.0.1:2375" })).toEqual({ changes: true, replaces: [] });
  });
});
