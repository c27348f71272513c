/**
 * The program with `service.orchestrator: swarm`, under Pulumi's mocks: the Swarm target's resource
 * graph, the service spec in every field, secrets as Swarm secrets (never in the environment),
 * rotation and scaling as the engine will see them, the registry path, the manager check at the
 * start, and the same outputs as the single-host target. What Swarm itself does is proven in
 * test/swarm.e2e.test.ts.
 */
import { createHmac } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { hardeningProfile } from "../components/hardening";
import { createHash } from "node:crypto";
import { caddyConfig } from "../components/proxy/caddyConfig";
import { specRelease } from "../components/swarm/tasks";
import { POLICIES, type ResourceValidationArgs } from "../policy/rules";
import { kindOf } from "../policy/workloads";
import {
  asSeenByEngine,
  fakeDigest,
  FAKE_AUTONAME_SUFFIX,
  FAKE_CHECKED_AT,
  parentTypeOf,
  removeStackFiles,
  setUpStack,
  settle,
  registeredDependencies,
  stagingSetup,
  type FakeHostImages,
  type RecordingMocks,
  type RegistryCheckCall,
  type StackSetup,
} from "../support/mocks";
import { backendMetricsPortDefault, portsIn } from "../support/ports";

afterAll(removeStackFiles);

const registryChecks = vi.hoisted(() => [] as RegistryCheckCall[]);
/** What the manager holds of the stack's images at the program's start (nothing unless a test says). */
const managerImages = vi.hoisted(() => ({ reads: [] }) as FakeHostImages);
vi.mock("../components/docker/preflight", async (importOriginal) => (await import("../support/mocks")).recordingPreflight(importOriginal, registryChecks, {}, managerImages));
// The manager check asks a real engine (test/swarm.e2e.test.ts does); here it records, or refuses when told.
const swarmChecks = vi.hoisted(() => ({ calls: [] as unknown[][], refuse: undefined as string | undefined }));
vi.mock("../components/swarm/preflight", async (importOriginal) => ({
  ...(await importOriginal<Record<string, unknown>>()),
  checkSwarmManager: async (...args: unknown[]) => {
    swarmChecks.calls.push(args);
    if (swarmChecks.refuse !== undefined) throw new pulumi.RunError(swarmChecks.refuse);
  },
}));

type Outputs = Record<string, pulumi.Output<unknown>>;
const PREFIX = "backend-delivery-staging";
const DYNAMIC = "pulumi-nodejs:dynamic:Resource";
const PG = ["postgresql://app:", "canary-pg-7f3a", "@db.internal:5432/app"].join("");
const KEY = "canary-secret-key-7f3a-0123456789abcdef0123";

function swarmSetup(service: Record<string, unknown> = {}, more: Partial<StackSetup["config"]> = {}): StackSetup {
  const setup = stagingSetup();
  setup.config.service = { hostPort: 8080, env: { LOG_LEVEL: "info" }, orchestrator: "swarm", ...service };
  setup.config.secrets = { DATABASE_URL: PG, SECRET_KEY: KEY };
  Object.assign(setup.config, more);
  return setup;
}

/** A Swarm stack through a registry, as a swarm of several nodes needs. */
function registrySwarmSetup(): StackSetup {
  const setup = swarmSetup(
    {},
    {
      image: { name: "team/backend", registry: { server: "registry.example.com", username: "ci" } },
      registryPassword: "canary-registry-pass-7f3a",
      // Staging signs what it pushes (issue 19's supply chain); the Swarm target changes nothing there.
      cosignPrivateKey: "canary-cosign-key-7f3a-encrypted-pem",
      cosignPassword: "canary-cosign-pass-7f3a",
    },
  );
  setup.encrypted = [...setup.encrypted!, "registryPassword", "cosignPrivateKey", "cosignPassword"];
  return setup;
}

async function run(setup: StackSetup): Promise<{ mocks: RecordingMocks; outputs: Record<string, unknown> }> {
  process.env.GIT_SHA = "0123456789abcdef0123456789abcdef01234567";
  swarmChecks.calls.length = 0;
  const { mocks } = await setUpStack(setup);
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Outputs>;
  const outputs = await settle(await program());
  return { mocks, outputs };
}

/** The service's inputs as the engine received them. */
function serviceOf(mocks: RecordingMocks) {
  return mocks.byName(`${PREFIX}-service`, "docker:index/service:Service").inputs as {
    name: string;
    mode: unknown;
    endpointSpec: unknown;
    updateConfig: unknown;
    rollbackConfig: unknown;
    auth?: { serverAddress: string; username: string; password: unknown };
    convergeConfig?: unknown;
    taskSpec: {
      containerSpec: Record<string, unknown> & { env: Record<string, string>; labels: { label: string; value: string }[]; secrets: Record<string, unknown>[] };
      [key: string]: unknown;
    };
  };
}

const releaseOf = (mocks: RecordingMocks) => mocks.byName(`${PREFIX}-rollout`, "pulumi-nodejs:dynamic:Resource").inputs.release as string;
/** The settings the tasks read (IMAGE_DIGEST aside), which name their Swarm config's resource. */
const SETTINGS_TEXT = 'APP_ENV="staging"\nLOG_LEVEL="info"\n';
const settingsName = (text = SETTINGS_TEXT) => `${PREFIX}-settings-${createHash("sha256").update(text).digest("hex").slice(0, 12)}`;
const secretNames = (mocks: RecordingMocks) => mocks.ofType("docker:index/secret:Secret").map((s) => s.name).sort();
const tag = (name: string, value: string) => createHmac("sha256", KEY).update(`${name}\0${value}`).digest("hex").slice(0, 12);

afterEach(() => {
  delete process.env.BACKEND_DELIVERY_STACK_FILE;
  delete process.env.GIT_SHA;
  swarmChecks.refuse = undefined;
});

describe("the Swarm target under mocks", () => {
  it("registers the Swarm target's graph: overlay network, a secret per setting, the service, the proxy, its configuration and the rollout check; no data volume", async () => {
    const { mocks } = await run(swarmSetup());
    expect(mocks.resources.map((r) => [r.type, r.name]).sort()).toEqual(
      [
        ["backend-delivery:index:BackendImage", PREFIX],
        ["docker:index/image:Image", `${PREFIX}-image`],
        ["backend-delivery:index:SwarmService", PREFIX],
        ["docker:index/network:Network", `${PREFIX}-network`],
        ["docker:index/secret:Secret", `${PREFIX}-DATABASE_URL-${tag("DATABASE_URL", PG)}`],
        ["docker:index/secret:Secret", `${PREFIX}-SECRET_KEY-${tag("SECRET_KEY", KEY)}`],
        ["docker:index/service:Service", `${PREFIX}-service`],
        ["docker:index/serviceConfig:ServiceConfig", settingsName()],
        ["backend-delivery:index:FrontProxy", `${PREFIX}-proxy`],
        ["docker:index/remoteImage:RemoteImage", `${PREFIX}-proxy-image`],
        ["docker:index/volume:Volume", `${PREFIX}-proxy-config`],
        ["docker:index/volume:Volume", `${PREFIX}-proxy-data`],
        ["docker:index/container:Container", `${PREFIX}-proxy`],
        [DYNAMIC, `${PREFIX}-proxy-config`],
        [DYNAMIC, `${PREFIX}-rollout`],
        [DYNAMIC, `${PREFIX}-images`],
      ].sort(),
    );
    for (const child of ["network", `DATABASE_URL-${tag("DATABASE_URL", PG)}`, "service", "rollout", "images"]) expect(parentTypeOf(`${PREFIX}-${child}`)).toBe("backend-delivery:index:SwarmService");
    expect(mocks.byName(`${PREFIX}-network`).inputs).toEqual({ name: `${PREFIX}-network`, driver: "overlay", attachable: true });
    expect(mocks.byName(`${PREFIX}`, "backend-delivery:index:SwarmService").inputs).toEqual({});
  });

  it("asks the engine at docker:host whether it is a manager, before anything, and only under swarm", async () => {
    await run(swarmSetup());
    expect(swarmChecks.calls).toEqual([[{}, "staging", false]]);
    await run(stagingSetup());
    expect(swarmChecks.calls).toEqual([]);
  });

  it("a refused manager check stops the program before any resource is registered", async () => {
    swarmChecks.refuse = "stack staging cannot run its Swarm service (1 problem); nothing was changed";
    const { mocks } = await setUpStack(swarmSetup());
    vi.resetModules();
    const program = (await import("../index")).default as unknown as () => Promise<Outputs>;
    await expect(program()).rejects.toThrow("cannot run its Swarm service");
    expect(mocks.resources).toEqual([]);
  });

  it("spells out the service: replicated, dnsrr, start-first with rollback, by digest, hardened, secrets as files and none in the environment", async () => {
    const { mocks } = await run(swarmSetup());
    const service = serviceOf(mocks);
    const profile = hardeningProfile;
    expect(service).toMatchObject({
      name: `${PREFIX}-app`,
      mode: { replicated: { replicas: 2 } },
      endpointSpec: { mode: "dnsrr" },
      updateConfig: { parallelism: 1, delay: "0s", monitor: "10s", maxFailureRatio: "0", order: "start-first", failureAction: "rollback" },
      rollbackConfig: { parallelism: 1, delay: "0s", monitor: "10s", maxFailureRatio: "0", order: "start-first", failureAction: "pause" },
    });
    // The provider's own wait deletes a service that does not converge: the rollout check waits instead.
    expect(service.convergeConfig).toBeUndefined();
    expect(service.auth).toBeUndefined();
    const spec = service.taskSpec.containerSpec;
    expect(spec).toMatchObject({
      image: fakeDigest(`${PREFIX}-image`),
      user: profile.user,
      readOnly: true,
      capDrops: ["ALL"],
      sysctl: { "net.ipv4.ping_group_range": "1 0" },
      stopSignal: "SIGTERM",
      stopGracePeriod: "30s",
      mounts: [
        { type: "tmpfs", target: "/data", tmpfsOptions: { mode: 0o1777, sizeBytes: 64 * 1024 ** 2 } },
        { type: "tmpfs", target: "/tmp", tmpfsOptions: { mode: 0o1777, sizeBytes: 64 * 1024 ** 2 } },
      ],
    });
    expect(spec.healthcheck).toBeUndefined();
    // PORT alone in the environment (the provider writes it in a random order); the rest in a settings file.
    expect(spec.env).toEqual({ PORT: "8000" });
    const config = mocks.byName(settingsName(), "docker:index/serviceConfig:ServiceConfig").inputs;
    expect(config.labels).toEqual([{ label: "backend-delivery.component", value: PREFIX }]);
    // The image's digest too (the tasks' metrics report it), which is not part of the config's name.
    expect(Buffer.from(String(config.data), "base64").toString("utf8")).toBe(`APP_ENV="staging"\nIMAGE_DIGEST="${fakeDigest(`${PREFIX}-image`)}"\nLOG_LEVEL="info"\n`);
    expect(config.name).toBeUndefined();
    expect((spec.configs as Record<string, unknown>[]).map((c) => ({ ...c, configId: undefined, configName: undefined }))).toEqual([
      { fileName: "/run/configs/backend.env", fileUid: "10001", fileGid: "10001", fileMode: 0o400, configId: undefined, configName: undefined },
    ]);
    // Container labels are fixed for the stack's life: the provider replaces the service, delete-first, when one changes.
    expect(spec.labels.map((l) => l.label)).toEqual(["backend-delivery.component", "backend-delivery.environment", "backend-delivery.stack"]);
    expect(spec.secrets.map((s) => ({ ...s, secretId: undefined, secretName: undefined }))).toEqual([
      { fileName: "DATABASE_URL", fileUid: "10001", fileGid: "10001", fileMode: 0o400, secretId: undefined, secretName: undefined },
      { fileName: "SECRET_KEY", fileUid: "10001", fileGid: "10001", fileMode: 0o400, secretId: undefined, secretName: undefined },
    ]);
    expect(service.taskSpec).toMatchObject({
      resources: { limits: { memoryBytes: 512 * 1024 ** 2, nanoCpus: 1e9 } },
      restartPolicy: { condition: "any", delay: "1s", maxAttempts: 0, window: "0s" },
      placement: { constraints: [] },
      networksAdvanceds: [{ id: `${PREFIX}-network-id` }],
      logDriver: { name: "json-file", options: { "max-size": "10m", "max-file": "3" } },
    });
    // The release as the tasks' specs will show it: the image, the secrets' and the settings' names.
    expect(releaseOf(mocks)).toBe(
      specRelease(fakeDigest(`${PREFIX}-image`), secretNames(mocks).map((n) => `${n}-${FAKE_AUTONAME_SUFFIX}`), [`${settingsName()}-${FAKE_AUTONAME_SUFFIX}`]),
    );
  });

  it("makes each secret a Swarm secret named by the stack, the setting and a keyed hash of its value, named by Pulumi (create-before-delete), the value secret", async () => {
    const { mocks } = await run(swarmSetup());
    expect(secretNames(mocks)).toEqual([`${PREFIX}-DATABASE_URL-${tag("DATABASE_URL", PG)}`, `${PREFIX}-SECRET_KEY-${tag("SECRET_KEY", KEY)}`]);
    for (const secret of mocks.ofType("docker:index/secret:Secret")) {
      // An explicit name would make the provider replace the secret, and the service with it, delete-first.
      expect(secret.inputs.name).toBeUndefined();
      const data = asSeenByEngine(secret.inputs.data);
      expect(data.secret).toBe(true);
      expect([PG, KEY]).toContain(Buffer.from(String(data.value), "base64").toString("utf8"));
    }
    const plain = JSON.stringify(serviceOf(mocks)) + secretNames(mocks).join();
    for (const canary of ["canary-pg-7f3a", "canary-secret-key-7f3a"]) expect(plain).not.toContain(canary);
  });

  it("a rotation is new secret names and a new release; the same values are the same names; scaling changes neither", async () => {
    const first = await run(swarmSetup());
    const again = await run(swarmSetup());
    expect(secretNames(again.mocks)).toEqual(secretNames(first.mocks));
    expect(releaseOf(again.mocks)).toBe(releaseOf(first.mocks));

    const rotatedSetup = swarmSetup();
    rotatedSetup.config.secrets = { DATABASE_URL: PG, SECRET_KEY: `${KEY}-rotated` };
    const rotated = await run(rotatedSetup);
    // SECRET_KEY keys every name, so both secrets are new; the service rolls to them.
    expect(secretNames(rotated.mocks).filter((n) => secretNames(first.mocks).includes(n))).toEqual([]);
    expect(releaseOf(rotated.mocks)).not.toBe(releaseOf(first.mocks));

    const scaled = await run(swarmSetup({ replicas: 5 }));
    expect(serviceOf(scaled.mocks).mode).toEqual({ replicated: { replicas: 5 } });
    expect(releaseOf(scaled.mocks)).toBe(releaseOf(first.mocks));
    expect(secretNames(scaled.mocks)).toEqual(secretNames(first.mocks));
    expect(mocks(scaled).byName(`${PREFIX}-rollout`, DYNAMIC).inputs.replicas).toBe(5);
  });

  it("passes placement and update settings through", async () => {
    const { mocks } = await run(
      swarmSetup({ replicas: 3, placement: { constraints: ["node.labels.tier==backend"], maxReplicasPerNode: 2 }, update: { parallelism: 2, monitorSeconds: 30 } }),
    );
    const service = serviceOf(mocks);
    expect(service.taskSpec.placement).toEqual({ constraints: ["node.labels.tier==backend"], maxReplicas: 2 });
    expect(service.updateConfig).toMatchObject({ parallelism: 2, monitor: "30s" });
    expect(service.rollbackConfig).toMatchObject({ parallelism: 2, monitor: "30s" });
    // The rollout's deadline: the readiness budget and the monitor window for each of 2 batches.
    expect(mocks.byName(`${PREFIX}-rollout`, DYNAMIC).inputs.timeoutSeconds).toBe(2 * (120 + 30));
  });

  it("with a registry: the tasks run the pushed digest and pull it with the stack's credentials; the probe uses the manager's copy", async () => {
    const { mocks, outputs } = await run(registrySwarmSetup());
    expect(swarmChecks.calls).toEqual([[{}, "staging", true]]);
    const service = serviceOf(mocks);
    const pushed = `registry.example.com/team/backend@${fakeDigest(`${PREFIX}-image`)}`;
    expect(service.taskSpec.containerSpec.image).toBe(pushed);
    expect(outputs.imageRef).toBe(pushed);
    // Through a provider of the service's own: the service's `auth` block would replace it when the token changes.
    expect(service.auth).toBeUndefined();
    const puller = mocks.byName(`${PREFIX}-swarm`, "pulumi:providers:docker");
    // Provider inputs reach the engine as JSON text; secret as a whole.
    const auth = asSeenByEngine(puller.inputs.registryAuth);
    expect(auth.secret).toBe(true);
    expect(JSON.parse(String(auth.value))).toEqual([{ address: "registry.example.com", username: "ci", password: "canary-registry-pass-7f3a" }]);
    expect(mocks.byName(`${PREFIX}-service`, "docker:index/service:Service").provider).toMatch(new RegExp(`::${PREFIX}-swarm::`));
    expect(mocks.byName(`${PREFIX}-rollout`, DYNAMIC).inputs.probeImage).toBe(fakeDigest(`pulled-${pushed}`));
  });

  it("exports the outputs of the single-host target, the record saying how many replicas were ready", async () => {
    const { outputs } = await run(swarmSetup({ replicas: 3 }));
    expect(outputs.url).toBe("http://127.0.0.1:8080");
    expect(outputs.readiness).toEqual({
      ready: true,
      imageDigest: fakeDigest(`${PREFIX}-image`),
      checkedAt: FAKE_CHECKED_AT,
      url: `http://tasks.${PREFIX}-app:8000/readyz`,
      version: "0.1.0",
      hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
      replicas: { desired: 3, ready: 3 },
    });
  });

  it("reaches the tasks on their app port alone: the proxy forwards no other, and the service publishes none", async () => {
    const { mocks } = await run(swarmSetup());
    const proxied = mocks.byName(`${PREFIX}-proxy-config`, DYNAMIC).inputs as { service: string; port: number };
    // What the proxy configuration resource loads (swarm/proxyConfig.ts) for those inputs: the tasks' app port.
    const forwarded = portsIn(caddyConfig({ upstream: { name: `tasks.${proxied.service}`, port: proxied.port }, hsts: true }));
    expect(forwarded.filter((p) => p.path.includes("upstreams"))).toEqual([expect.objectContaining({ port: 8000 })]);
    // dnsrr and no ports: Swarm publishes nothing of the tasks, neither through its mesh nor on a node.
    expect(serviceOf(mocks).endpointSpec).toEqual({ mode: "dnsrr" });
    // The one port the service names is where its tasks listen (PORT, for the image's health check).
    expect(portsIn(serviceOf(mocks))).toEqual([{ path: "taskSpec.containerSpec.env.PORT", port: 8000 }]);
    const metricsPort = backendMetricsPortDefault();
    expect(mocks.resources.flatMap((r) => portsIn(r.inputs)).filter((p) => p.port === metricsPort)).toEqual([]);
  });

  it("checks the rollout on the stack's network, then points the proxy at tasks.<service> and looks through it from a probe of the release", async () => {
    const { mocks, outputs } = await run(swarmSetup());
    const rollout = mocks.byName(`${PREFIX}-rollout`, DYNAMIC).inputs;
    expect(rollout).toMatchObject({ service: `${PREFIX}-app`, network: `${PREFIX}-network`, replicas: 2, path: "/readyz", hostHeader: "127.0.0.1", user: "10001:10001" });
    // The rollout check no longer waits for the proxy: the proxy's configuration waits for it.
    expect(rollout.proxyConfiguredAt).toBeUndefined();
    const config = mocks.byName(`${PREFIX}-proxy-config`, DYNAMIC).inputs;
    expect(config.tls).toBeUndefined();
    expect(config).toMatchObject({
      proxyContainer: `${PREFIX}-proxy`,
      proxyContainerId: fakeDigest(`container-${PREFIX}-proxy`).slice(7),
      service: `${PREFIX}-app`,
      port: 8000,
      hsts: true,
      release: releaseOf(mocks),
      readyAt: FAKE_CHECKED_AT,
      probe: { image: fakeDigest(`${PREFIX}-image`), network: `${PREFIX}-network`, user: rollout.user, hostConfig: rollout.hostConfig, labels: rollout.labels },
      hostHeader: "127.0.0.1",
    });
    expect(rollout.labels).toEqual({ "backend-delivery.stack": "staging", "backend-delivery.environment": "staging", "backend-delivery.role": "probe" });
    expect(outputs.tls).toEqual({ mode: "off" });
  });
});

/** The recorded mocks of a run (for readability in the scaling case). */
function mocks(run: { mocks: RecordingMocks }): RecordingMocks {
  return run.mocks;
}

describe("image retention under Swarm, under mocks", () => {
  const STAGING = `organization/backend-delivery/staging`;
  const id = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;
  /** The manager holds images 1..4 of the stack, an hour apart; 4 is what staging serves. */
  const holdOnManager = (n: number) => {
    managerImages.reads.length = 0;
    managerImages.images = Array.from({ length: n }, (_, i) => ({ id: id(i + 1), created: new Date(Date.UTC(2030, 0, 1, i)).toISOString() }));
    managerImages.hostIds = n === 0 ? {} : { [id(n)]: id(n) };
  };
  let info: ReturnType<typeof vi.spyOn>;
  afterEach(() => {
    info?.mockRestore();
    holdOnManager(0);
  });
  const infoLines = (): string[] => info.mock.calls.map((call: unknown[]) => String(call[0]));

  function registrySetup(keepImages?: number): StackSetup {
    const setup = registrySwarmSetup();
    setup.mocks = { stacks: { [STAGING]: { imageRef: id(4) } } };
    if (keepImages !== undefined) setup.config.release = { keepImages };
    return setup;
  }

  it("prunes every node that ran the service's tasks, after the rollout check: the serving digest, the rollback target, the plan for the manager", async () => {
    holdOnManager(4);
    info = vi.spyOn(pulumi.log, "info").mockImplementation(() => Promise.resolve());
    const { mocks } = await run(registrySetup(2));
    const { __provider: provider, ...inputs } = mocks.byName(`${PREFIX}-images`, DYNAMIC).inputs;
    // The serialized provider carries the node script itself: the job needs no file of ours on any node.
    expect(String(provider)).toContain("def prune_plan(");
    const pushed = `registry.example.com/team/backend@${fakeDigest(`${PREFIX}-image`)}`;
    expect(inputs).toEqual({
      project: "backend-delivery",
      repository: "backend-delivery-staging-images",
      keepImages: 2,
      service: `${PREFIX}-app`,
      // What every task runs, by digest, which each node resolves itself (the manager's copy is the probe's).
      serving: pushed,
      previous: id(4),
      // The fake build is new to the manager: 4 stays as the target, one place is the new image's.
      planned: [id(1), id(2), id(3)],
      labels: { "backend-delivery.stack": "staging", "backend-delivery.environment": "staging" },
      nodes: undefined,
      unreached: undefined,
    });
    expect(parentTypeOf(`${PREFIX}-images`)).toBe("backend-delivery:index:SwarmService");
    // Registered to wait for the rollout check: an update that Swarm rolled back prunes nothing.
    expect(registeredDependencies(`${PREFIX}-images`).filter((urn) => urn.endsWith(`::${PREFIX}-rollout`))).toHaveLength(1);
    expect(managerImages.reads).toEqual([[{}, "backend-delivery", "staging", [id(4), undefined, undefined]]]);
    expect(infoLines()).toContainEqual(
      "stack staging keeps its serving image, its rollback target and its 2 newest on every Swarm node that ran its tasks; once the new release serves, " +
        `this update (if it builds a new image) removes the older ones there (on the manager, the local Docker engine: 3 older image(s): ${[1, 2, 3].map((n) => String(n).repeat(12)).join(", ")})`,
    );
  });

  it("says so in every preview, also when the manager holds nothing to remove (a worker may)", async () => {
    holdOnManager(1);
    info = vi.spyOn(pulumi.log, "info").mockImplementation(() => Promise.resolve());
    const { mocks } = await run(registrySetup());
    expect(mocks.byName(`${PREFIX}-images`, DYNAMIC).inputs).toMatchObject({ keepImages: 3, planned: [] });
    expect(infoLines()).toContainEqual(
      "stack staging keeps its serving image, its rollback target and its 3 newest on every Swarm node that ran its tasks; once the new release serves, " +
        "this update (if it builds a new image) removes the older ones there (on the manager, the local Docker engine: none)",
    );
  });

  it("is no workload to the policy pack: every rule lets its inputs through", async () => {
    const { mocks } = await run(registrySetup());
    const props = mocks.byName(`${PREFIX}-images`, DYNAMIC).inputs;
    expect(kindOf(DYNAMIC, props)).toBeUndefined();
    for (const policy of POLICIES) {
      const violations: string[] = [];
      const args = { type: DYNAMIC, name: `${PREFIX}-images`, urn: "urn", props, opts: {}, notApplicable: () => undefined } as unknown as ResourceValidationArgs;
      (policy.validateResource as (a: ResourceValidationArgs, report: (message: string) => void) => void)(args, (message) => violations.push(message));
      expect(violations, policy.name).toEqual([]);
    }
  });
});
