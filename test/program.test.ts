import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { hardeningProfile, proxyProfile, toHostConfig } from "../components/hardening";
import { caddyConfig } from "../components/proxy/caddyConfig";
import { UNSIGNED_WITHOUT_REGISTRY } from "../components/promotion/signature";
import {
  asSeenByEngine,
  awaitOutput,
  fakeDigest,
  FAKE_CHECKED_AT,
  FAKE_RELEASE_SUFFIX,
  FAKE_SBOM_PACKAGES,
  FAKE_VERSION,
  parentTypeOf,
  removeStackFiles,
  setUpStack,
  stagingSetup,
  settle,
  STAGING_CANARIES,
  type RecordingMocks,
  type RegistryCheckCall,
  type StackSetup,
} from "../support/mocks";
import { backendMetricsPortDefault, portsIn } from "../support/ports";

afterAll(removeStackFiles);

// The registry checks ask a real engine and registry (test/deliveryInfra.docker.test.ts and the
// end-to-end suite do that); here they are recorded.
const registryChecks = vi.hoisted(() => [] as RegistryCheckCall[]);
// What the host holds of the stack's images (image retention's read, and a rollback's check).
const hostImages = vi.hoisted(() => ({ reads: [] as unknown[][], hostIds: {} as Record<string, string> }));
vi.mock("../components/docker/preflight", async (importOriginal) =>
  (await import("../support/mocks")).recordingPreflight(importOriginal, registryChecks, {}, hostImages),
);

type Outputs = Record<string, pulumi.Output<unknown>>;

/** Stands in for the cosign private key: the mocks never sign, so any value does; it must reach no output. */
const CANARY_COSIGN_KEY = "canary-cosign-key-7f3a-encrypted-pem";

const GIT_SHA = "0123456789abcdef0123456789abcdef01234567";

async function runStaging(setup: StackSetup = stagingSetup()): Promise<{ mocks: RecordingMocks; outputs: Outputs }> {
  process.env.GIT_SHA = GIT_SHA;
  process.env.APP_VERSION = "9.8.7";
  const { mocks } = await setUpStack(setup);
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Outputs>;
  const outputs = await program();
  // Every output resolved, and every registration this run started delivered to its own mocks.
  await settle(outputs);
  return { mocks, outputs };
}

afterEach(() => {
  delete process.env.BACKEND_DELIVERY_STACK_FILE;
  delete process.env.GIT_SHA;
  delete process.env.APP_VERSION;
});

const PREFIX = "backend-delivery-staging";
const SELF = "organization/backend-delivery/staging";
const RELEASE = `${PREFIX}-app-${FAKE_RELEASE_SUFFIX}`;
const DYNAMIC = "pulumi-nodejs:dynamic:Resource";

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
      ["docker:index/network:Network", `${PREFIX}-egress`],
      ["docker:index/volume:Volume", `${PREFIX}-data`],
      ["backend-delivery:index:FrontProxy", `${PREFIX}-proxy`],
      ["docker:index/remoteImage:RemoteImage", `${PREFIX}-proxy-image`],
      ["docker:index/volume:Volume", `${PREFIX}-proxy-config`],
      ["docker:index/volume:Volume", `${PREFIX}-proxy-data`],
      ["docker:index/container:Container", `${PREFIX}-proxy`],
      [DYNAMIC, `${PREFIX}-release`],
      [DYNAMIC, `${PREFIX}-readiness`],
      [DYNAMIC, `${PREFIX}-route`],
      [DYNAMIC, `${PREFIX}-images`],
    ].sort());
  });

  it("parents every child to its component", () => {
    expect(parentTypeOf(`${PREFIX}-image`)).toBe("backend-delivery:index:BackendImage");
    for (const child of ["network", "egress", "data", "release", "readiness", "route"]) {
      expect(parentTypeOf(`${PREFIX}-${child}`)).toBe("backend-delivery:index:BackendService");
    }
    for (const child of ["proxy-image", "proxy-config", "proxy-data"]) expect(parentTypeOf(`${PREFIX}-${child}`)).toBe("backend-delivery:index:FrontProxy");
  });

  it("keeps component state empty so no secret lands in it", () => {
    for (const type of ["BackendImage", "BackendService", "FrontProxy"]) {
      const component = mocks.resources.find((r) => r.type === `backend-delivery:index:${type}`);
      expect(component?.inputs, type).toEqual({});
    }
  });

  it("builds the image locally with build args and no secret", () => {
    const image = mocks.byName(`${PREFIX}-image`).inputs;
    expect(image).toEqual({
      imageName: "backend-delivery",
      build: {
        context: "./backend",
        dockerfile: "backend/Dockerfile",
        args: { APP_VERSION: "9.8.7", GIT_SHA, PYTHON_BASE: "local/python-base:3.11-bookworm", DELIVERY_PROJECT: "backend-delivery" },
      },
      skipPush: true,
      buildOnPreview: false,
    });
  });

  it("runs the release container with every field of the hardening profile, on the stack's egress network and volume", () => {
    const r = mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs;
    expect(r).toMatchObject({
      namePrefix: `${PREFIX}-app`,
      image: fakeDigest(`${PREFIX}-image`),
      user: hardeningProfile.user,
      stopSignal: "SIGTERM",
      stopTimeoutSeconds: 30,
      network: `${PREFIX}-egress`,
      hostConfig: toHostConfig(hardeningProfile, `${PREFIX}-data`),
      labels: {
        "backend-delivery.component": PREFIX,
        "backend-delivery.environment": "staging",
        "backend-delivery.role": "release",
        "backend-delivery.stack": "staging",
      },
    });
    // The engine's own pids limit, which the Docker provider's Container cannot set.
    expect((r.hostConfig as { PidsLimit: number }).PidsLimit).toBe(256);
    expect(r.dockerHost).toBeUndefined();
  });

  it("sets the release's env from config and secrets, sorted, secret as a whole, with the digest of the image it runs", async () => {
    const r = mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs;
    const secrets = stagingSetup().config.secrets as Record<string, string>;
    const digest = await awaitOutput(outputs.imageDigest!);
    expect(digest).toBe(fakeDigest(`${PREFIX}-image`));
    expect(asSeenByEngine(r.env)).toEqual({
      secret: true,
      value: [
        "APP_ENV=staging",
        `DATABASE_URL=${secrets.DATABASE_URL}`,
        `IMAGE_DIGEST=${digest}`,
        "LOG_LEVEL=info",
        "PORT=8000",
        `SECRET_KEY=${secrets.SECRET_KEY}`,
      ],
    });
  });

  it("reaches the release on its app port alone: no route forwards the backend's metrics port and no host port publishes it", () => {
    const metricsPort = backendMetricsPortDefault();
    const route = mocks.byName(`${PREFIX}-route`, DYNAMIC).inputs;
    expect(route).toMatchObject({ servingAlias: `${PREFIX}-serving`, releasePort: 8000 });
    // What the route loads into the proxy for those inputs: one upstream, the release's app port.
    const forwarded = portsIn(caddyConfig({ upstream: `${String(route.servingAlias)}:${String(route.releasePort)}`, hsts: true }));
    expect(forwarded.filter((p) => p.path.endsWith(".dial"))).toEqual([expect.objectContaining({ port: 8000 })]);
    // The release publishes nothing; the one published port of the stack is the proxy's, on loopback.
    const release = mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs;
    expect(Object.keys(release.hostConfig as object)).not.toContain("PortBindings");
    expect(portsIn(release)).toEqual([]);
    const published = mocks.ofType("docker:index/container:Container").filter((c) => c.inputs.ports !== undefined);
    expect(published.map((c) => [c.name, c.inputs.ports])).toEqual([[`${PREFIX}-proxy`, [{ internal: 8080, external: 8080, ip: "127.0.0.1", protocol: "tcp" }]]]);
    // And nothing the program registers names the metrics port (METRICS_PORT is the backend's default).
    expect(metricsPort).not.toBe(8000);
    expect(mocks.resources.flatMap((r) => portsIn(r.inputs)).filter((p) => p.port === metricsPort)).toEqual([]);
  });

  it("runs the front proxy hardened, owning the host port on loopback, resuming its last configuration", () => {
    const c = mocks.byName(`${PREFIX}-proxy`, "docker:index/container:Container").inputs;
    const p = proxyProfile;
    expect(c).toMatchObject({
      name: `${PREFIX}-proxy`,
      image: fakeDigest("pulled-caddy:2.10"),
      command: ["caddy", "run", "--resume"],
      envs: ["XDG_CONFIG_HOME=/config", "XDG_DATA_HOME=/data"],
      user: p.user,
      readOnly: true,
      tmpfs: p.tmpfs,
      // Its configuration, and its data (certificates, ACME account, internal CA), each on a volume of its own.
      volumes: [
        { volumeName: `${PREFIX}-proxy-config`, containerPath: "/config" },
        { volumeName: `${PREFIX}-proxy-data`, containerPath: "/data" },
      ],
      capabilities: { drops: ["ALL"], adds: [] },
      securityOpts: ["no-new-privileges:true"],
      memory: 128,
      memorySwap: 128,
      cpus: "0.5",
      restart: "unless-stopped",
      ports: [{ internal: 8080, external: 8080, ip: "127.0.0.1", protocol: "tcp" }],
      networksAdvanced: [{ name: `${PREFIX}-network` }],
      mustRun: true,
    });
    // No engine-side wait, no uploads: the route loads its configuration through the engine and sets
    // the engine's pids limit (test/proxyEdges.docker.test.ts). RLIMIT_NPROC counts the proxy's own
    // uid across the host: every proxy there together.
    expect(c.user).toBe("10002:10002");
    expect(c.ulimits).toEqual([{ name: "nproc", soft: 8 * 128, hard: 8 * 128 }]);
    expect(c.wait).toBeUndefined();
    expect(c.uploads).toBeUndefined();
    expect(mocks.byName(`${PREFIX}-proxy-image`).inputs).toEqual({ name: "caddy:2.10", keepLocally: true });
  });

  it("names networks and volumes after the component, the egress network sorted before the stack's", () => {
    expect(mocks.byName(`${PREFIX}-network`).inputs).toEqual({ name: `${PREFIX}-network` });
    expect(mocks.byName(`${PREFIX}-egress`).inputs).toEqual({ name: `${PREFIX}-egress` });
    // Docker routes a container through the first of its networks by name: joining the stack's network keeps the egress route.
    const names = [mocks.byName(`${PREFIX}-network`).inputs.name, mocks.byName(`${PREFIX}-egress`).inputs.name] as string[];
    expect(names.sort()[0]).toBe(mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs.network);
    expect(mocks.byName(`${PREFIX}-data`).inputs).toEqual({ name: `${PREFIX}-data` });
    expect(mocks.byName(`${PREFIX}-proxy-config`).inputs).toEqual({ name: `${PREFIX}-proxy-config` });
    expect(mocks.byName(`${PREFIX}-proxy-data`).inputs).toEqual({ name: `${PREFIX}-proxy-data` });
  });

  it("proves the release ready through the engine, then routes the proxy to it", () => {
    const r = mocks.byName(`${PREFIX}-readiness`).inputs;
    const releaseId = fakeDigest(`release-${PREFIX}-release`).slice("sha256:".length);
    expect(r).toMatchObject({
      containerName: RELEASE,
      containerId: releaseId,
      port: 8000,
      imageDigest: fakeDigest(`${PREFIX}-image`),
      path: "/readyz",
      timeoutSeconds: 120,
      intervalMs: 1000,
      successThreshold: 2,
      hostHeader: "127.0.0.1",
      timeoutHint: "raise readiness.timeoutSeconds: `pulumi config set --stack staging --path readiness.timeoutSeconds <seconds>`",
    });
    expect(mocks.byName(`${PREFIX}-route`).inputs).toMatchObject({
      proxyContainer: `${PREFIX}-proxy`,
      releaseName: RELEASE,
      releaseId,
      releasePort: 8000,
      // The release joins the stack's network under the name the proxy forwards to; it starts on the egress network.
      network: `${PREFIX}-network`,
      servingAlias: `${PREFIX}-serving`,
      readyAt: FAKE_CHECKED_AT,
      hsts: true,
      hostHeader: "127.0.0.1",
    });
  });

  it("exports exactly the staging outputs: no rollback target on the first deploy", async () => {
    expect(Object.keys(outputs).sort()).toEqual(["environment", "imageDigest", "imageRef", "readiness", "supplyChain", "tls", "url"]);
    // Plain HTTP at the proxy (the default for a staging stack): nothing served over TLS to record.
    expect(await awaitOutput(outputs.tls!)).toEqual({ mode: "off" });
    const digest = fakeDigest(`${PREFIX}-image`);
    expect(await awaitOutput(outputs.environment!)).toBe("staging");
    expect(await awaitOutput(outputs.imageRef!)).toBe(digest);
    expect(await awaitOutput(outputs.imageDigest!)).toBe(digest);
    expect(await awaitOutput(outputs.url!)).toBe("http://127.0.0.1:8080");
    expect(await awaitOutput(outputs.readiness!)).toEqual({
      ready: true,
      imageDigest: digest,
      checkedAt: FAKE_CHECKED_AT,
      url: `http://${RELEASE}:8000/readyz`,
      version: FAKE_VERSION,
      hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
    });
    expect(mocks.reads).toContain(SELF);
    // Without a registry there is nothing to sign, and the record says so.
    expect(await awaitOutput(outputs.supplyChain!)).toEqual({ status: "unsigned", reason: UNSIGNED_WITHOUT_REGISTRY });
    expect(mocks.resources.filter((r) => "privateKey" in r.inputs)).toEqual([]);
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
  it("with a registry: the engine where pulumi runs builds and pushes, the stack's host pulls the digest, the password stays secret", async () => {
    const setup = stagingSetup({ otherConfig: { "docker:host": "ssh://deploy@staging.example.com:2222", "docker:sshOpts": '["-i","/keys/deploy"]' } });
    setup.config.image = { name: "team/backend", registry: { server: "registry.example.com", username: "ci" } };
    setup.config.registryPassword = "canary-registry-pass-7f3a";
    setup.config.cosignPrivateKey = CANARY_COSIGN_KEY;
    setup.config.cosignPassword = "canary-cosign-pass-7f3a";
    setup.encrypted = [...setup.encrypted!, "registryPassword", "cosignPrivateKey", "cosignPassword"];
    registryChecks.length = 0;
    const { mocks, outputs } = await runStaging(setup);
    // The login is checked once, before the build, on the engine that builds (the local one).
    expect(registryChecks).toEqual([
      { check: "engine", args: [{ host: "ssh://deploy@staging.example.com:2222", sshOpts: ["-i", "/keys/deploy"] }, "staging"] },
      { check: "login", args: [{}, { server: "registry.example.com", username: "ci", password: "canary-registry-pass-7f3a" }, "staging"] },
    ]);
    const built = mocks.byName(`${PREFIX}-image`, "docker:index/image:Image");
    const image = built.inputs;
    expect(image.imageName).toBe("registry.example.com/team/backend");
    expect(image.skipPush).toBe(false);
    expect(asSeenByEngine(image.registry)).toEqual({
      secret: true,
      value: { server: "registry.example.com", username: "ci", password: "canary-registry-pass-7f3a" },
    });
    expect((image.build as Record<string, unknown>).cacheFrom).toEqual({ images: ["registry.example.com/team/backend"] });
    expect((image.build as { args: Record<string, string> }).args).toEqual({ APP_VERSION: "9.8.7", GIT_SHA, DELIVERY_PROJECT: "backend-delivery" });
    // Built by an explicit provider with no host: the local engine, not the stack's docker:host.
    const builder = mocks.byName(`${PREFIX}-builder`, "pulumi:providers:docker");
    expect(builder.inputs.host).toBeUndefined();
    expect(built.provider).toMatch(new RegExp(`::${PREFIX}-builder::`));
    const digest = fakeDigest(`${PREFIX}-image`);
    const ref = `registry.example.com/team/backend@${digest}`;
    expect(await awaitOutput(outputs.imageRef!)).toBe(ref);
    expect(await awaitOutput(outputs.imageDigest!)).toBe(digest);
    // The stack's host pulls exactly that digest, with the credentials, over its own connection.
    const pulled = mocks.byName(`${PREFIX}-image`, DYNAMIC);
    expect(pulled.inputs).toMatchObject({
      imageRef: ref,
      server: "registry.example.com",
      username: "ci",
      dockerHost: "ssh://deploy@staging.example.com:2222",
      dockerSshOpts: ["-i", "/keys/deploy"],
    });
    expect(asSeenByEngine(pulled.inputs.password)).toEqual({ secret: true, value: "canary-registry-pass-7f3a" });
    expect(mocks.ofType("pulumi:providers:docker").map((p) => p.name).filter((n) => !n.startsWith("default"))).toEqual([`${PREFIX}-builder`]);
    expect(mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs.image).toBe(fakeDigest(`pulled-${ref}`));
    // The pushed digest is signed and its SBOM attested, with the key and both passwords as secrets.
    const signature = mocks.byName(`${PREFIX}-signature`, DYNAMIC);
    expect(parentTypeOf(`${PREFIX}-signature`)).toBe("backend-delivery:index:ImageSignature");
    expect(Object.keys(signature.inputs).filter((k) => k !== "__provider").sort()).toEqual(["imageRef", "keyPassword", "password", "privateKey", "server", "username"]);
    expect(signature.inputs).toMatchObject({ imageRef: ref, server: "registry.example.com", username: "ci" });
    expect(asSeenByEngine(signature.inputs.privateKey)).toEqual({ secret: true, value: CANARY_COSIGN_KEY });
    expect(asSeenByEngine(signature.inputs.keyPassword)).toEqual({ secret: true, value: "canary-cosign-pass-7f3a" });
    expect(asSeenByEngine(signature.inputs.password)).toEqual({ secret: true, value: "canary-registry-pass-7f3a" });
    expect(await awaitOutput(outputs.supplyChain!)).toEqual({
      status: "signed",
      imageDigest: digest,
      signatureDigest: fakeDigest(`sig-${ref}`),
      attestationDigest: fakeDigest(`att-${ref}`),
      sbom: { format: "spdx-json", packages: FAKE_SBOM_PACKAGES },
      publicKeyFingerprint: fakeDigest("public-key"),
    });
    const serialized = JSON.stringify(await Promise.all(Object.values(outputs).map((o) => awaitOutput(o))));
    expect(serialized).not.toContain("canary");
    expect(await pulumi.isSecret(pulumi.output(outputs.supplyChain!))).toBe(false);
  });

  it("without a registry the image is built on the stack's own Docker host and run by its id", async () => {
    const setup = stagingSetup({ otherConfig: { "docker:host": "ssh://deploy@staging.example.com" } });
    registryChecks.length = 0;
    const { mocks } = await runStaging(setup);
    expect(registryChecks).toEqual([{ check: "engine", args: [{ host: "ssh://deploy@staging.example.com" }, "staging"] }]);
    // No explicit provider: the stack's default one, which follows docker:host, builds and runs.
    expect(mocks.ofType("pulumi:providers:docker").filter((p) => !p.name.startsWith("default"))).toEqual([]);
    // Nothing is pulled but the proxy's own image.
    expect(mocks.ofType("docker:index/remoteImage:RemoteImage").map((r) => r.name)).toEqual([`${PREFIX}-proxy-image`]);
    expect(mocks.byName(`${PREFIX}-image`, "docker:index/image:Image").provider).toBeUndefined();
    expect(mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs.image).toBe(fakeDigest(`${PREFIX}-image`));
  });

  it("service, readiness, proxy and Docker host settings reach the release, the check, the proxy and the route", async () => {
    const setup = stagingSetup({ otherConfig: { "docker:host": "unix:///run/user/docker.sock" } });
    setup.config.service = {
      hostPort: 9090,
      containerPort: 8001,
      env: { LOG_LEVEL: "debug" },
      resources: { memoryMb: 256, cpus: 0.5, pids: 64 },
    };
    setup.config.readiness = { path: "/healthz", timeoutSeconds: 30, intervalMs: 250, successThreshold: 3 };
    setup.config.proxy = { image: "local/caddy:2-bookworm" };
    const { mocks, outputs } = await runStaging(setup);
    const release = mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs;
    expect(release.hostConfig).toMatchObject({ Memory: 256 * 1024 * 1024, MemorySwap: 256 * 1024 * 1024, NanoCpus: 500_000_000, PidsLimit: 64 });
    expect(release.dockerHost).toBe("unix:///run/user/docker.sock");
    expect(asSeenByEngine(release.env)).toEqual({ secret: true, value: expect.arrayContaining(["PORT=8001", "LOG_LEVEL=debug"]) as unknown });
    expect(mocks.byName(`${PREFIX}-readiness`).inputs).toMatchObject({
      port: 8001,
      path: "/healthz",
      timeoutSeconds: 30,
      intervalMs: 250,
      successThreshold: 3,
      dockerHost: "unix:///run/user/docker.sock",
    });
    expect(mocks.byName(`${PREFIX}-route`).inputs).toMatchObject({ releasePort: 8001, dockerHost: "unix:///run/user/docker.sock" });
    expect(mocks.byName(`${PREFIX}-proxy`, "docker:index/container:Container").inputs.ports).toEqual([
      { internal: 8080, external: 9090, ip: "127.0.0.1", protocol: "tcp" },
    ]);
    expect(mocks.byName(`${PREFIX}-proxy-image`).inputs.name).toBe("local/caddy:2-bookworm");
    expect(await awaitOutput(outputs.url!)).toBe("http://127.0.0.1:9090");
  });

  it("evaluates the same graph in preview", async () => {
    const { mocks } = await runStaging(stagingSetup({ preview: true }));
    expect(mocks.resources).toHaveLength(15);
  });
});

describe("staging: what it ran before", () => {
  const A = `sha256:${"a".repeat(64)}`;
  const B = `sha256:${"b".repeat(64)}`;
  const rollback = { fromImageRef: B, at: "2030-01-01T00:00:00.000Z" };
  const withHistory = (previous: Record<string, unknown>) => stagingSetup({ mocks: { stacks: { [SELF]: previous } } });

  it("names the image it ran before as the rollback target when the new one differs", async () => {
    const { outputs } = await runStaging(withHistory({ imageRef: A }));
    expect(await awaitOutput(outputs.previousImageRef!)).toBe(A);
    expect(Object.keys(outputs)).not.toContain("rollback");
  });

  it("keeps the rollback target and the rollback record when the image is the same (a rerun)", async () => {
    const digest = fakeDigest(`${PREFIX}-image`);
    const { outputs } = await runStaging(withHistory({ imageRef: digest, previousImageRef: A, rollback: { ...rollback, fromImageRef: A } }));
    expect(await awaitOutput(outputs.previousImageRef!)).toBe(A);
    expect(await awaitOutput(outputs.rollback!)).toEqual({ ...rollback, fromImageRef: A });
  });

  it("has null, not a missing value, where a rerun of the first image has no target yet", async () => {
    const { outputs } = await runStaging(withHistory({ imageRef: fakeDigest(`${PREFIX}-image`) }));
    expect(await awaitOutput(outputs.previousImageRef!)).toBeNull();
  });
});

describe("rollback (BACKEND_DELIVERY_ROLLBACK_TO, as npm run rollback sets it)", () => {
  const A = `sha256:${"a".repeat(64)}`;
  const B = `sha256:${"b".repeat(64)}`;
  afterEach(() => {
    delete process.env.BACKEND_DELIVERY_ROLLBACK_TO;
    hostImages.hostIds = {};
  });

  it("runs the previous image through the same release path, builds nothing, and records it", async () => {
    process.env.BACKEND_DELIVERY_ROLLBACK_TO = A;
    hostImages.hostIds = { [A]: A, [B]: B };
    const { mocks, outputs } = await runStaging(stagingSetup({ mocks: { stacks: { [SELF]: { imageRef: B, previousImageRef: A } } } }));
    expect(mocks.ofType("docker:index/image:Image")).toEqual([]);
    expect(mocks.byName(`${PREFIX}-release`, DYNAMIC).inputs.image).toBe(A);
    expect(mocks.byName(`${PREFIX}-readiness`).inputs.imageDigest).toBe(A);
    expect(await awaitOutput(outputs.imageRef!)).toBe(A);
    expect(await awaitOutput(outputs.imageDigest!)).toBe(A);
    expect(await awaitOutput(outputs.previousImageRef!)).toBe(B);
    const record = (await awaitOutput(outputs.rollback!)) as { fromImageRef: string; at: string };
    expect(record.fromImageRef).toBe(B);
    expect(Date.now() - Date.parse(record.at)).toBeLessThan(60_000);
  });

  it("refuses a target that is gone from the Docker host (no registry can bring it back), before any resource", async () => {
    process.env.BACKEND_DELIVERY_ROLLBACK_TO = A;
    hostImages.hostIds = { [B]: B };
    const error = await runStaging(stagingSetup({ mocks: { stacks: { [SELF]: { imageRef: B, previousImageRef: A } } } })).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(pulumi.RunError);
    expect(error?.message).toBe(
      `rollback of stack staging refused: its rollback target ${A} is no longer on the Docker host (removed by hand, or by \`docker image prune\`), ` +
        "and without a registry nothing can bring it back; nothing was changed. Roll forward instead: fix the release and run `pulumi up --stack staging`.",
    );
  });

  it.each([
    ["with nothing to roll back to", { imageRef: B }, "this stack has no earlier release to roll back to"],
    ["when the target changed since it was read", { imageRef: B, previousImageRef: `sha256:${"c".repeat(64)}` }, `the rollback asked for ${A}, but the stack's rollback target is now`],
  ])("refuses %s, before any resource", async (_name, previous, message) => {
    process.env.BACKEND_DELIVERY_ROLLBACK_TO = A;
    const error = await runStaging(stagingSetup({ mocks: { stacks: { [SELF]: previous } } })).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(pulumi.RunError);
    expect(error?.message).toContain(`rollback of stack staging refused: ${message}`);
  });
});

