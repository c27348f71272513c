// The readiness probe against the real backend container on the Docker engine, hardened with the
// same profile the program deploys. Fails (never skips) when the engine or the base image is missing.
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Readiness } from "../components/contract";
import { hardeningProfile, toDockerRunArgs } from "../components/hardening";
import { dockerContainerView, execProber } from "../components/readiness/dockerView";
import { isReadinessError, probeReadiness, type ReadinessError } from "../components/readiness/probe";
import { readinessProvider } from "../components/readiness/check";
import { buildImage, docker, LOCAL_PYTHON_BASE, removeContainers, removeImages, requireDockerEngine, uniqueName } from "../support/docker";
import { freePort } from "../support/wait";

const VERSION = "4.5.6-readiness";
const TAG = `${uniqueName("bd-readiness-test")}:latest`;
const DB_PASSWORD = `pw-${randomBytes(9).toString("hex")}`;
const containers: string[] = [];
/** A user-defined network, as a stack has: containers find each other (and themselves) by name on it. */
const NETWORK = uniqueName("bd-readiness-net");
let imageDigest = "";

beforeAll(async () => {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  await docker(["network", "create", NETWORK]);
  const built = await buildImage({
    context: path.resolve(__dirname, "../backend"),
    tag: TAG,
    buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE, APP_VERSION: VERSION, GIT_SHA: "0123abc" },
  });
  imageDigest = built.imageId;
}, 900_000);

afterAll(async () => {
  await removeContainers(...containers);
  await docker(["network", "rm", NETWORK], { allowFailure: true });
  await removeImages(TAG);
});

/**
 * Starts the image under the hardening profile with its port published on loopback only.
 * Secret values go through the CLI's environment (`-e NAME`), never its argv.
 */
async function start(env: Record<string, string>, extraArgs: string[] = []) {
  const name = uniqueName("bd-readiness");
  containers.push(name);
  const port = await freePort();
  const started = Date.now();
  const args = ["run", "-d", "--name", name, "--network", NETWORK, ...toDockerRunArgs(hardeningProfile), ...extraArgs, "-p", `127.0.0.1:${port}:8000`];
  for (const key of Object.keys(env)) args.push("-e", key);
  const run = await docker([...args, TAG], { env });
  return { name, id: run.stdout.trim(), url: `http://127.0.0.1:${port}`, started };
}

const secretKey = () => randomBytes(36).toString("base64url");

function options(url: string, overrides: { timeoutSeconds?: number; intervalMs?: number } = {}) {
  return { url, path: "/readyz", imageDigest, timeoutSeconds: 60, intervalMs: 250, successThreshold: 2, ...overrides };
}

async function failure(promise: Promise<unknown>): Promise<ReadinessError> {
  try {
    await promise;
  } catch (error) {
    expect(isReadinessError(error)).toBe(true);
    return error as ReadinessError;
  }
  throw new Error("expected the readiness check to fail");
}

describe("readiness of the real backend container", () => {
  it("records ready, the version and the hardening facts of a healthy container", async () => {
    const c = await start({ APP_ENV: "staging", DATABASE_URL: "sqlite:////data/app.db", SECRET_KEY: secretKey() });
    const record = await probeReadiness(options(c.url), dockerContainerView(c.id));
    expect(Readiness.parse(record)).toEqual(record);
    expect(record).toEqual({
      ready: true,
      imageDigest,
      checkedAt: record.checkedAt,
      url: `${c.url}/readyz`,
      version: VERSION,
      hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
    });
  });

  it("asks from inside the container, through the engine, at its address on the network: no published port needed", async () => {
    const c = await start({ APP_ENV: "staging", DATABASE_URL: "sqlite:////data/app.db", SECRET_KEY: secretKey() });
    const inside = `http://${c.name}:8000`;
    const record = await probeReadiness(options(inside), dockerContainerView(c.id), execProber(c.id, undefined, "127.0.0.1"));
    expect(record).toMatchObject({ ready: true, imageDigest, url: `${inside}/readyz`, version: VERSION });
    // Nothing listens on that port yet: the prober says so, in the words of the container's Python.
    await expect(execProber(c.id, undefined, "127.0.0.1").get(`http://${c.name}:8999/readyz`, 2000)).rejects.toThrow(/ConnectionRefusedError/);
    // A Host the backend does not accept is answered 400, as from anywhere.
    expect((await execProber(c.id, undefined, "evil.example").get(`${inside}/readyz`, 2000)).status).toBe(400);
  });

  it("runs the same check through the serialized dynamic provider in a plain Node process", async () => {
    const c = await start({ APP_ENV: "staging", DATABASE_URL: "sqlite:////data/app.db", SECRET_KEY: secretKey() });
    const serialized = await pulumi.runtime.serializeFunction(() => readinessProvider, { allowSecrets: true });
    const { path: probePath, timeoutSeconds, intervalMs, successThreshold } = options(c.url);
    const inputs = { path: probePath, timeoutSeconds, intervalMs, successThreshold, imageDigest, containerName: c.name, containerId: c.id, port: 8000, hostHeader: "127.0.0.1" };
    // What Pulumi's dynamic-provider host does: load the text with require-from-string, call create.
    const script = `
      const provider = require("require-from-string")(require("fs").readFileSync(0, "utf8")).handler();
      provider.create(${JSON.stringify(inputs)}).then((r) => console.log(JSON.stringify(r)), (e) => { console.error(e.message); process.exit(3); });`;
    const out = await new Promise<string>((resolve, reject) => {
      const child = execFile(process.execPath, ["-e", script], { cwd: path.resolve(__dirname, ".."), timeout: 90_000 }, (error, stdout, stderr) =>
        error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(stdout),
      );
      child.stdin!.end(serialized.text);
    });
    const result = JSON.parse(out) as { id: string; outs: { readiness: unknown; containerId: string; imageDigest: string } };
    expect(result.id).toBe(`${c.name}@${c.id.slice(0, 12)}`);
    expect(result.outs.containerId).toBe(c.id);
    const readiness = Readiness.parse(result.outs.readiness);
    expect(readiness.version).toBe(VERSION);
    expect(readiness.url).toBe(`http://${c.name}:8000/readyz`);
    expect(readiness.hardening.user).toBe("10001:10001");
  });

  it("fails within 5 s, with the container's log lines, when it exits for missing config", async () => {
    const c = await start({ APP_ENV: "staging", DATABASE_URL: `postgresql://app:${DB_PASSWORD}@127.0.0.1:5432/app` }, ["--restart", "no"]);
    const error = await failure(probeReadiness(options(c.url), dockerContainerView(c.id)));
    const elapsed = Date.now() - c.started;
    expect(error.reason).toBe("exited");
    expect(elapsed).toBeLessThan(5000);
    expect(error.logLines.some((line) => line.includes("SECRET_KEY"))).toBe(true);
    expect(error.message).toMatch(/the container exited with code [1-9]\d*/);
    expect(error.message).toContain(`  | ${error.logLines.at(-1)}`);
    expect(error.message).not.toContain(DB_PASSWORD);
  });

  it("fails fast on the crash loop the profile's restart policy turns that exit into", async () => {
    const c = await start({ APP_ENV: "staging", DATABASE_URL: "sqlite:////data/app.db" });
    const error = await failure(probeReadiness(options(c.url), dockerContainerView(c.id)));
    expect(Date.now() - c.started).toBeLessThan(5000);
    expect(error.reason).toBe("restarted");
    expect(error.logLines.some((line) => line.includes("SECRET_KEY"))).toBe(true);
  });

  it("times out with the probe history when the database never answers", async () => {
    const closedPort = await freePort();
    const c = await start({
      APP_ENV: "staging",
      DATABASE_URL: `postgresql://app:${DB_PASSWORD}@127.0.0.1:${closedPort}/app`,
      SECRET_KEY: secretKey(),
    });
    const started = Date.now();
    const error = await failure(probeReadiness(options(c.url, { timeoutSeconds: 8, intervalMs: 500 }), dockerContainerView(c.id)));
    const elapsed = Date.now() - started;
    expect(error.reason).toBe("timeout");
    expect(elapsed).toBeGreaterThanOrEqual(7990);
    expect(elapsed).toBeLessThan(12_000);
    expect(error.history.length).toBeGreaterThanOrEqual(8);
    expect(error.history.at(-1)!.status).toBe(503);
    expect(error.history.some((a) => a.status === 200)).toBe(false);
    expect(error.message).toContain(`Readiness check of ${c.url}/readyz timed out after 8 s`);
    expect(error.message).toMatch(/#\d+ \+\d+\.\ds HTTP 503/);
    expect(error.message).not.toContain(DB_PASSWORD);
  }, 60_000);
});
