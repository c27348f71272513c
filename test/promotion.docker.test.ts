/**
 * End to end on the real Docker engine: build the backend image once, run it as staging with the
 * hardening profile, probe it with the readiness function, let the gate decide on that record,
 * start prod from the approved reference; then break staging and show the gate refuses.
 * Needs the engine and the local base image; fails (never skips) without them.
 */
import { randomBytes } from "node:crypto";
import * as net from "node:net";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Readiness } from "../components/contract";
import { Readiness as ReadinessSchema } from "../components/contract";
import { hardeningProfile, toDockerRunArgs } from "../components/hardening";
import { decidePromotion, type PromotionPolicy } from "../components/promotion/decide";
import { plainOutputs } from "../support/stagingRecord";
import { dockerContainerView } from "../components/readiness/dockerView";
import { isReadinessError, probeReadiness } from "../components/readiness/probe";
import { LOCAL_PYTHON_BASE, buildImage, docker, removeContainers, requireDockerEngine, uniqueName } from "../support/docker";

const BACKEND = path.join(__dirname, "..", "backend");
const PREFIX = uniqueName("promotion-e2e");
const TAG = `${PREFIX}:test`;
const POLICY: PromotionPolicy = { fromStack: "organization/backend-delivery/staging", maxAgeHours: 24, registry: false };
const created: { containers: string[]; volumes: string[] } = { containers: [], volumes: [] };

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => (typeof address === "object" && address !== null ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/**
 * Starts the backend hardened, on 127.0.0.1 only. The secret key travels through this process's
 * environment (`-e SECRET_KEY` without a value), never through argv. Both roles use SQLite on their
 * own data volume: prod's PostgreSQL settings are not what this test is about, the image is.
 */
async function startBackend(role: "staging" | "prod", image: string): Promise<{ id: string; url: string }> {
  const name = `${PREFIX}-${role}`;
  const volume = `${name}-data`;
  await docker(["volume", "create", volume]);
  created.volumes.push(volume);
  const port = await freePort();
  const env = { SECRET_KEY: randomBytes(32).toString("hex") };
  const { stdout } = await docker(
    [
      "run", "--detach", "--name", name,
      ...toDockerRunArgs(hardeningProfile, volume),
      "--publish", `127.0.0.1:${port}:8000`,
      "--env", "APP_ENV=staging",
      "--env", "DATABASE_URL=sqlite:////data/app.db",
      "--env", "SECRET_KEY",
      "--label", `test=${PREFIX}`,
      image,
    ],
    { env },
  );
  const id = stdout.trim();
  created.containers.push(id);
  return { id, url: `http://127.0.0.1:${port}` };
}

function probe(container: { id: string; url: string }, imageDigest: string, timeoutSeconds = 60): Promise<Readiness> {
  return probeReadiness(
    { url: container.url, path: "/readyz", imageDigest, timeoutSeconds, intervalMs: 250, successThreshold: 2 },
    dockerContainerView(container.id),
  );
}

function stagingOutputs(imageId: string, url: string, readiness: Readiness) {
  return plainOutputs({ environment: "staging", imageRef: imageId, imageDigest: imageId, url, readiness });
}

let imageId = "";

beforeAll(async () => {
  // Fails with the fix when the engine or the base image is missing: these tests never skip.
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  const built = await buildImage({
    context: BACKEND,
    tag: TAG,
    buildArgs: { PYTHON_BASE: LOCAL_PYTHON_BASE, APP_VERSION: "9.8.7" },
  });
  imageId = built.imageId;
}, 900_000);

afterAll(async () => {
  await removeContainers(...created.containers);
  if (created.volumes.length > 0) await docker(["volume", "rm", "--force", ...created.volumes], { allowFailure: true });
  // Only the tag goes: the layers stay cached for the next build of the same backend.
  await docker(["image", "rm", "--no-prune", TAG], { allowFailure: true });
});

describe("promotion on the real engine", () => {
  it("promotes the image staging proved ready, and refuses once staging is broken", async () => {
    expect(imageId).toMatch(/^sha256:[0-9a-f]{64}$/);

    const staging = await startBackend("staging", imageId);
    const record = await probe(staging, imageId);
    expect(ReadinessSchema.parse(record)).toEqual(record);
    expect(record).toMatchObject({
      ready: true,
      imageDigest: imageId,
      url: `${staging.url}/readyz`,
      version: "9.8.7",
      hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
    });

    const decision = decidePromotion(stagingOutputs(imageId, staging.url, record), POLICY, new Date());
    expect(decision).toEqual({ allowed: true, reasons: [] });

    // Prod starts from the approved reference: the local image id, the very bytes staging ran.
    const approvedRef = imageId;
    const prod = await startBackend("prod", approvedRef);
    expect((await docker(["inspect", "--format", "{{.Image}}", prod.id])).stdout.trim()).toBe(imageId);
    const prodRecord = await probe(prod, approvedRef);
    expect(prodRecord.ready).toBe(true);
    expect(prodRecord.imageDigest).toBe(imageId);

    // Break staging and check it again: the probe fails fast, so the new record says not ready.
    await docker(["stop", "--time", "5", staging.id]);
    const started = Date.now();
    const failure = await probe(staging, imageId, 30).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isReadinessError(failure, "exited")).toBe(true);
    expect(Date.now() - started).toBeLessThan(5_000);
    const notReady: Readiness = { ...record, ready: false, checkedAt: new Date().toISOString() };

    const refused = decidePromotion(stagingOutputs(imageId, staging.url, notReady), POLICY, new Date());
    expect(refused.allowed).toBe(false);
    expect(refused.reasons.map((r) => [r.code, r.output])).toEqual([["not-ready", "readiness.ready"]]);
  }, 180_000);
});
