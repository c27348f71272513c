import * as pulumi from "@pulumi/pulumi";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { hardeningProfile } from "../components/hardening";
import {
  asSeenByEngine,
  awaitOutput,
  fakeDigest,
  FAKE_CHECKED_AT,
  FAKE_VERSION,
  parentTypeOf,
  setUpStack,
  stagingSetup,
  settle,
  STAGING_CANARIES,
  type RecordingMocks,
  type StackSetup,
} from "../support/mocks";

type Outputs = Record<string, pulumi.Output<unknown>>;

const GIT_SHA = "0123456789abcdef0123456789abcdef01234567";

async function runStaging(setup: StackSetup = stagingSetup()): Promise<{ mocks: RecordingMocks; outputs: Outputs }> {
  process.env.GIT_SHA = GIT_SHA;
  process.env.APP_VERSION = "9.8.7";
  const { mocks } = await setUpStack(setup);
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Outputs>;
  const outputs = await program();
  await settle(outputs);
  return { mocks, outputs };
}

afterEach(() => {
  delete process.env.BACKEND_DELIVERY_STACK_FILE;
  delete process.env.GIT_SHA;
  delete process.env.APP_VERSION;
});

const PREFIX = "backend-delivery-staging";

describe("staging program under mocks", () => {
  let mocks: RecordingMocks;
  let outputs: Outputs;
  beforeAll(async () => {
    ({ mocks, outputs } = await runStaging());
  });

  it("registers exactly this resource graph", () => {
    // Registration is concurrent, so the order is not part of the contract.
    expect(mocks.resources.map((r) => [r.type, r.name]).sort()).toEqual([
      ["backend-delivery:index:BackendImage", PREFIX],
      ["docker:index/image:Image", `${PREFIX}-image`],
      ["backend-delivery:index:BackendService", PREFIX],
      ["docker:index/network:Network", `${PREFIX}-network`],
      ["docker:index/volume:Volume", `${PREFIX}-data`],
      ["docker:index/container:Container", `${PREFIX}-container`],
      ["pulumi-nodejs:dynamic:Resource", `${PREFIX}-readiness`],
    ].sort());
  });

  it("parents every child to its component", () => {
    expect(parentTypeOf(`${PREFIX}-image`)).toBe("backend-delivery:index:BackendImage");
    for (const child of ["network", "data", "container"]) {
      expect(parentTypeOf(`${PREFIX}-${child}`)).toBe("backend-delivery:index:BackendService");
    }
    expect(parentTypeOf(`${PREFIX}-readiness`)).toBeUndefined();
  });

  it("keeps component state empty so no secret lands in it", () => {
    expect(mocks.byName(PREFIX, "backend-delivery:index:BackendImage").inputs).toEqual({});
    expect(mocks.byName(PREFIX, "backend-delivery:index:BackendService").inputs).toEqual({});
  });

  it("builds the image locally with build args and no secret", () => {
    const image = mocks.byName(`${PREFIX}-image`).inputs;
    expect(image).toEqual({
      imageName: "backend-delivery",
      build: {
        context: "./backend",
        dockerfile: "backend/Dockerfile",
        args: { APP_VERSION: "9.8.7", GIT_SHA, PYTHON_BASE: "local/python-base:3.11-bookworm" },
      },
      skipPush: true,
      buildOnPreview: false,
    });
  });

  it("maps every field of the hardening profile onto the container", () => {
    const c = mocks.byName(`${PREFIX}-container`).inputs;
    const p = hardeningProfile;
    expect(c.name).toBe(`${PREFIX}-container`);
    expect(c.image).toBe(fakeDigest(`${PREFIX}-image`));
    expect(c.user).toBe(p.user);
    expect(c.readOnly).toBe(true);
    expect(c.tmpfs).toEqual({ "/tmp": "rw,noexec,nosuid,nodev,size=64m" });
    expect(c.volumes).toEqual([{ volumeName: `${PREFIX}-data`, containerPath: "/data" }]);
    expect(c.capabilities).toEqual({ drops: ["ALL"], adds: [] });
    expect(c.securityOpts).toEqual(["no-new-privileges:true"]);
    expect(c.memory).toBe(512);
    expect(c.memorySwap).toBe(512);
    // The provider reads whole numbers back as "1.0"; any other spelling is a perpetual replacement.
    expect(c.cpus).toBe("1.0");
    expect(c.ulimits).toEqual([{ name: "nproc", soft: 256, hard: 256 }]);
    expect(c.restart).toBe("unless-stopped");
    expect(c.logDriver).toBe("json-file");
    expect(c.logOpts).toEqual({ "max-size": "10m", "max-file": "3" });
    expect(c.stopSignal).toBe("SIGTERM");
    expect(c.stopTimeout).toBe(30);
    expect(c.destroyGraceSeconds).toBe(30);
  });

  it("publishes the port on loopback, leaves the wait to the readiness check, labels the container", () => {
    const c = mocks.byName(`${PREFIX}-container`).inputs;
    expect(c.ports).toEqual([{ internal: 8000, external: 8080, ip: "127.0.0.1", protocol: "tcp" }]);
    expect(c.networksAdvanced).toEqual([{ name: `${PREFIX}-network` }]);
    // An engine-side wait would block for its whole timeout before the readiness check could fail fast.
    expect(c.wait).toBeUndefined();
    expect(c.waitTimeout).toBeUndefined();
    expect(c.mustRun).toBe(true);
    expect(c.healthcheck).toBeUndefined();
    expect(c.labels).toEqual([
      { label: "backend-delivery.component", value: PREFIX },
      { label: "backend-delivery.environment", value: "staging" },
      { label: "backend-delivery.stack", value: "staging" },
    ]);
  });

  it("sets the container env from config and secrets, sorted", () => {
    const c = mocks.byName(`${PREFIX}-container`).inputs;
    const secrets = stagingSetup().config.secrets as Record<string, string>;
    expect(asSeenByEngine(c.envs)).toEqual({
      secret: true,
      value: [
        "APP_ENV=staging",
        `DATABASE_URL=${secrets.DATABASE_URL}`,
        "LOG_LEVEL=info",
        "PORT=8000",
        `SECRET_KEY=${secrets.SECRET_KEY}`,
      ],
    });
  });

  it("names network and volume after the component", () => {
    expect(mocks.byName(`${PREFIX}-network`).inputs).toEqual({ name: `${PREFIX}-network` });
    expect(mocks.byName(`${PREFIX}-data`).inputs).toEqual({ name: `${PREFIX}-data` });
  });

  it("checks readiness of this container and image", () => {
    const r = mocks.byName(`${PREFIX}-readiness`).inputs;
    expect(r).toMatchObject({
      url: "http://127.0.0.1:8080",
      containerName: `${PREFIX}-container`,
      containerId: fakeDigest(`container-${PREFIX}-container`).slice("sha256:".length),
      imageDigest: fakeDigest(`${PREFIX}-image`),
      path: "/readyz",
      timeoutSeconds: 120,
      intervalMs: 1000,
      successThreshold: 2,
    });
    expect(r.dockerHost).toBeUndefined();
  });

  it("exports exactly the staging outputs", async () => {
    expect(Object.keys(outputs).sort()).toEqual(["environment", "imageDigest", "imageRef", "readiness", "url"]);
    const digest = fakeDigest(`${PREFIX}-image`);
    expect(await awaitOutput(outputs.environment!)).toBe("staging");
    expect(await awaitOutput(outputs.imageRef!)).toBe(digest);
    expect(await awaitOutput(outputs.imageDigest!)).toBe(digest);
    expect(await awaitOutput(outputs.url!)).toBe("http://127.0.0.1:8080");
    expect(await awaitOutput(outputs.readiness!)).toEqual({
      ready: true,
      imageDigest: digest,
      checkedAt: FAKE_CHECKED_AT,
      url: "http://127.0.0.1:8080/readyz",
      version: FAKE_VERSION,
      hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
    });
  });

  it("no stack output holds a secret value or is secret", async () => {
    for (const [name, output] of Object.entries(outputs)) {
      expect(await pulumi.isSecret(pulumi.output(output)), name).toBe(false);
    }
    const serialized = JSON.stringify(
      await Promise.all(Object.values(outputs).map((o) => awaitOutput(o as pulumi.Output<unknown>))),
    );
    for (const canary of STAGING_CANARIES) expect(serialized).not.toContain(canary);
  });
});

describe("secrets stay secret through the container env", () => {
  it("the env Output handed to the container is secret, the plain-only env is not", async () => {
    const { containerEnv } = await import("../components/envMapping");
    const withSecret = containerEnv({
      appEnv: "staging",
      port: 8000,
      env: { LOG_LEVEL: "info" },
      secrets: { SECRET_KEY: pulumi.secret("canary-secret-key-7f3a") },
    });
    expect(await pulumi.isSecret(withSecret)).toBe(true);
    expect(await awaitOutput(withSecret)).toEqual([
      "APP_ENV=staging",
      "LOG_LEVEL=info",
      "PORT=8000",
      "SECRET_KEY=canary-secret-key-7f3a",
    ]);
    const plainOnly = containerEnv({ appEnv: "staging", port: 8000, env: {}, secrets: {} });
    expect(await pulumi.isSecret(plainOnly)).toBe(false);
  });

  it("the loaded config exposes every secret only as a secret Output", async () => {
    await setUpStack(stagingSetup());
    const { loadConfig } = await import("../components/config/load");
    const config = loadConfig();
    expect(Object.keys(config.secrets).sort()).toEqual(["DATABASE_URL", "SECRET_KEY"]);
    for (const value of Object.values(config.secrets)) {
      expect(pulumi.Output.isInstance(value)).toBe(true);
      expect(await pulumi.isSecret(value)).toBe(true);
    }
    expect(JSON.stringify({ ...config, secrets: undefined })).not.toContain("canary");
  });
});

describe("staging variants", () => {
  it("with a registry: pushes, references by repo digest, password secret", async () => {
    const setup = stagingSetup();
    setup.config.image = { name: "team/backend", registry: { server: "registry.example.com", username: "ci" } };
    setup.config.registryPassword = "canary-registry-pass-7f3a";
    setup.encrypted = [...setup.encrypted!, "registryPassword"];
    const { mocks, outputs } = await runStaging(setup);
    const image = mocks.byName(`${PREFIX}-image`).inputs;
    expect(image.imageName).toBe("registry.example.com/team/backend");
    expect(image.skipPush).toBe(false);
    expect(asSeenByEngine(image.registry)).toEqual({
      secret: true,
      value: { server: "registry.example.com", username: "ci", password: "canary-registry-pass-7f3a" },
    });
    expect((image.build as Record<string, unknown>).cacheFrom).toEqual({ images: ["registry.example.com/team/backend"] });
    expect((image.build as { args: Record<string, string> }).args).toEqual({ APP_VERSION: "9.8.7", GIT_SHA });
    const digest = fakeDigest(`${PREFIX}-image`);
    expect(await awaitOutput(outputs.imageRef!)).toBe(`registry.example.com/team/backend@${digest}`);
    expect(await awaitOutput(outputs.imageDigest!)).toBe(digest);
    expect(mocks.byName(`${PREFIX}-container`).inputs.image).toBe(`registry.example.com/team/backend@${digest}`);
    const serialized = JSON.stringify(await Promise.all(Object.values(outputs).map((o) => awaitOutput(o))));
    expect(serialized).not.toContain("canary");
  });

  it("service and readiness settings reach the container and the check", async () => {
    const setup = stagingSetup({ otherConfig: { "docker:host": "unix:///run/user/docker.sock" } });
    setup.config.service = {
      hostPort: 9090,
      containerPort: 8001,
      env: { LOG_LEVEL: "debug" },
      resources: { memoryMb: 256, cpus: 0.5, pids: 64 },
    };
    setup.config.readiness = { path: "/healthz", timeoutSeconds: 30, intervalMs: 250, successThreshold: 3 };
    const { mocks, outputs } = await runStaging(setup);
    const c = mocks.byName(`${PREFIX}-container`).inputs;
    expect(c.ports).toEqual([{ internal: 8001, external: 9090, ip: "127.0.0.1", protocol: "tcp" }]);
    expect([c.memory, c.memorySwap, c.cpus, c.ulimits]).toEqual([256, 256, "0.5", [{ name: "nproc", soft: 64, hard: 64 }]]);
    expect(asSeenByEngine(c.envs)).toEqual({
      secret: true,
      value: expect.arrayContaining(["PORT=8001", "LOG_LEVEL=debug"]) as unknown,
    });
    expect(mocks.byName(`${PREFIX}-readiness`).inputs).toMatchObject({
      url: "http://127.0.0.1:9090",
      path: "/healthz",
      timeoutSeconds: 30,
      intervalMs: 250,
      successThreshold: 3,
      dockerHost: "unix:///run/user/docker.sock",
    });
    expect(await awaitOutput(outputs.url!)).toBe("http://127.0.0.1:9090");
  });

  it("a readiness.url override is what gets probed", async () => {
    const setup = stagingSetup();
    setup.config.readiness = { url: "http://backend.internal:8080" };
    const { mocks } = await runStaging(setup);
    expect(mocks.byName(`${PREFIX}-readiness`).inputs.url).toBe("http://backend.internal:8080");
  });

  it("evaluates the same graph in preview", async () => {
    const { mocks } = await runStaging(stagingSetup({ preview: true }));
    expect(mocks.resources.map((r) => r.name).sort()).toEqual(
      [PREFIX, `${PREFIX}-image`, PREFIX, `${PREFIX}-network`, `${PREFIX}-data`, `${PREFIX}-container`, `${PREFIX}-readiness`].sort(),
    );
  });
});
