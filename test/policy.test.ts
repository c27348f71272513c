/**
 * The CrossGuard pack's rules (policy/), run the way CrossGuard runs them: each policy's
 * `validateResource` with a resource's type, name and inputs (secrets decrypted, as CrossGuard hands
 * them over). The inputs of this program's own proxy and release containers, as the staging program
 * registers them under Pulumi's mocks, pass every rule; each variant that breaks one rule is refused
 * by exactly that rule, with a message naming the resource, the property and the fix. The pack in
 * a real `pulumi preview` is proven by test/policy.e2e.test.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import type { ResourceValidationArgs } from "../policy/rules";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { POLICIES } from "../policy/rules";
import { CONTAINER, DYNAMIC, SERVICE } from "../policy/workloads";
import { removeStackFiles, setUpStack, settle, stagingSetup, type RecordingMocks, type RegistryCheckCall } from "../support/mocks";

afterAll(removeStackFiles);
const registryChecks = vi.hoisted(() => [] as RegistryCheckCall[]);
vi.mock("../components/docker/preflight", async (importOriginal) => (await import("../support/mocks")).recordingPreflight(importOriginal, registryChecks));

type Props = Record<string, unknown>;

/** What running every policy on one resource gave: violations by policy, and the ones not applicable. */
interface Verdicts {
  violations: Record<string, string[]>;
  notApplicable: Record<string, string>;
}

class NotApplicable extends Error {}

/** Runs every policy of the pack on one resource, as CrossGuard's analyzer does. */
function runPolicies(type: string, name: string, props: Props): Verdicts {
  const out: Verdicts = { violations: {}, notApplicable: {} };
  for (const policy of POLICIES) {
    const args = {
      type,
      name,
      urn: `urn:pulumi:test::backend-delivery::${type}::${name}`,
      props,
      opts: {},
      notApplicable: (reason?: string) => {
        throw new NotApplicable(reason);
      },
    } as unknown as ResourceValidationArgs;
    const validate = policy.validateResource as (a: ResourceValidationArgs, report: (message: string) => void) => void;
    try {
      validate(args, (message) => (out.violations[policy.name] ??= []).push(message));
    } catch (error) {
      if (!(error instanceof NotApplicable)) throw error;
      out.notApplicable[policy.name] = error.message;
    }
  }
  return out;
}

/** An input as CrossGuard hands it to a policy: Pulumi's secret envelopes opened. */
function decrypted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decrypted);
  if (value === null || typeof value !== "object") return value;
  const record = value as Record<string, unknown>;
  if (record[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig) return decrypted(record.value);
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, decrypted(v)]));
}

let proxy: Props;
let release: Props;
let mocks: RecordingMocks;

beforeAll(async () => {
  ({ mocks } = await setUpStack(stagingSetup()));
  vi.resetModules();
  const program = (await import("../index")).default as unknown as () => Promise<Record<string, unknown>>;
  await settle(await program());
  proxy = decrypted(mocks.byName("backend-delivery-staging-proxy", CONTAINER).inputs) as Props;
  release = decrypted(mocks.byName("backend-delivery-staging-release", DYNAMIC).inputs) as Props;
});

/** A Swarm service with the hardening its provider can express (the shape of issue 17's target). */
function service(): Props {
  return {
    name: "backend-delivery-staging-app",
    labels: [{ label: "backend-delivery.environment", value: "staging" }],
    taskSpec: {
      containerSpec: {
        image: `registry.example.com/backend@sha256:${"a".repeat(64)}`,
        user: "10001:10001",
        readOnly: true,
        capDrops: ["ALL"],
        env: { APP_ENV: "staging", PORT: "8000" },
        mounts: [{ type: "tmpfs", target: "/tmp" }],
      },
      resources: { limits: { memoryBytes: 512 * 1024 * 1024, nanoCpus: 1e9 } },
      networksAdvanceds: [{ name: "backend-delivery-staging" }],
    },
    endpointSpec: { mode: "dnsrr" },
  };
}

const clone = <T>(value: T): T => structuredClone(value);

describe("the program's own workloads pass every rule", () => {
  it("has one policy per rule, all mandatory", () => {
    expect(POLICIES.map((p) => p.name)).toEqual([
      "non-root-user",
      "read-only-root-filesystem",
      "capabilities-dropped",
      "no-new-privileges",
      "memory-limit",
      "pids-limit",
      "not-privileged",
      "no-host-namespaces",
      "no-docker-socket",
      "no-public-ports",
      "prod-images-pinned",
      "no-plain-secret-names",
    ]);
    expect(new Set(POLICIES.map((p) => p.enforcementLevel))).toEqual(new Set(["mandatory"]));
  });

  it("the front proxy container and the release container, as the staging program registers them", () => {
    expect(runPolicies(CONTAINER, "backend-delivery-staging-proxy", proxy)).toEqual({ violations: {}, notApplicable: {} });
    expect(runPolicies(DYNAMIC, "backend-delivery-staging-release", release)).toEqual({ violations: {}, notApplicable: {} });
  });

  it("a hardened Swarm service; the rules its provider cannot express are not applicable, with why", () => {
    const verdicts = runPolicies(SERVICE, "app", service());
    expect(verdicts.violations).toEqual({});
    expect(Object.keys(verdicts.notApplicable).sort()).toEqual(["no-new-privileges", "not-privileged", "pids-limit"]);
    expect(verdicts.notApplicable["pids-limit"]).toContain("the Docker provider's Service has no input for it");
  });

  it("prod's workloads run pinned images: the release by digest, the proxy by the pulled image's id", () => {
    const prodRelease = { ...clone(release), labels: { ...(release.labels as Props), "backend-delivery.environment": "prod" }, image: `ghcr.io/acme/backend@sha256:${"b".repeat(64)}` };
    expect(runPolicies(DYNAMIC, "r", prodRelease).violations).toEqual({});
    const prodProxy = { ...clone(proxy), labels: [{ label: "backend-delivery.environment", value: "prod" }, { label: "backend-delivery.role", value: "proxy" }] };
    expect(runPolicies(CONTAINER, "p", prodProxy).violations).toEqual({});
  });

  it("leaves other resources alone (images, networks, our other dynamic resources)", () => {
    for (const r of mocks.resources.filter((r) => r.type !== CONTAINER && !(r.type === DYNAMIC && "hostConfig" in r.inputs))) {
      expect(runPolicies(r.type, r.name, decrypted(r.inputs) as Props).violations, r.name).toEqual({});
    }
  });
});

describe("each workload that breaks one rule is refused by that rule, naming the resource, the property and the fix", () => {
  type Case = [rule: string, kind: "container" | "release" | "service", mutate: (p: Props) => void, message: string];
  const host = (p: Props) => p.hostConfig as Props;
  const spec = (p: Props) => (p.taskSpec as Props).containerSpec as Props;
  const cases: Case[] = [
    ["non-root-user", "container", (p) => delete p.user, "container bad: `user` is unset, so it runs as the image's default user; fix: set `user` to a non-root uid:gid such as 10001:10001"],
    ["non-root-user", "release", (p) => (p.user = "0:0"), 'release container bad: `user` is "0:0", which is root; fix: set `user`'],
    ["non-root-user", "service", (p) => (spec(p).user = "root"), 'Swarm service bad: `taskSpec.containerSpec.user` is "root", which is root'],
    ["read-only-root-filesystem", "container", (p) => (p.readOnly = false), "container bad: `readOnly` is false, not true; fix: set `readOnly` to true"],
    ["read-only-root-filesystem", "release", (p) => (host(p).ReadonlyRootfs = false), "release container bad: `hostConfig.ReadonlyRootfs` is false, not true"],
    ["read-only-root-filesystem", "service", (p) => delete spec(p).readOnly, "Swarm service bad: `taskSpec.containerSpec.readOnly` is null, not true"],
    ["capabilities-dropped", "container", (p) => (p.capabilities = { drops: ["NET_RAW"] }), 'container bad: `capabilities.drops` does not drop ALL (drops: NET_RAW); fix: add "ALL" to `capabilities.drops`'],
    ["capabilities-dropped", "release", (p) => (host(p).CapDrop = []), "release container bad: `hostConfig.CapDrop` does not drop ALL (drops: none)"],
    ["capabilities-dropped", "service", (p) => delete spec(p).capDrops, "Swarm service bad: `taskSpec.containerSpec.capDrops` does not drop ALL"],
    ["no-new-privileges", "container", (p) => (p.securityOpts = []), 'container bad: `securityOpts` lacks no-new-privileges; fix: add "no-new-privileges:true" to `securityOpts`'],
    ["no-new-privileges", "release", (p) => (host(p).SecurityOpt = ["seccomp=unconfined"]), "release container bad: `hostConfig.SecurityOpt` lacks no-new-privileges"],
    ["memory-limit", "container", (p) => delete p.memory, "container bad: `memory` is unset: no memory limit; fix: set `memory` (service.resources.memoryMb in stack config)"],
    ["memory-limit", "release", (p) => (host(p).Memory = 0), "release container bad: `hostConfig.Memory` is unset: no memory limit"],
    ["memory-limit", "service", (p) => delete (p.taskSpec as Props).resources, "Swarm service bad: `taskSpec.resources.limits.memoryBytes` is unset: no memory limit"],
    ["pids-limit", "container", (p) => delete p.ulimits, "container bad: `ulimits[nproc].hard` is unset: no process limit"],
    ["pids-limit", "release", (p) => delete host(p).PidsLimit, "release container bad: `hostConfig.PidsLimit` is unset: no process limit; fix: set `hostConfig.PidsLimit` (service.resources.pids in stack config)"],
    ["not-privileged", "container", (p) => (p.privileged = true), "container bad: `privileged` is true: the workload gets every device and capability of the host; fix: remove `privileged`"],
    ["not-privileged", "release", (p) => (host(p).Privileged = true), "release container bad: `hostConfig.Privileged` is true"],
    ["no-host-namespaces", "container", (p) => (p.networkMode = "host"), 'container bad: `networkMode` is "host": the workload shares the host\'s namespace; fix: remove `networkMode`'],
    ["no-host-namespaces", "container", (p) => (p.pidMode = "host"), 'container bad: `pidMode` is "host"'],
    ["no-host-namespaces", "release", (p) => (p.network = "host"), 'release container bad: `network` is "host"'],
    ["no-host-namespaces", "release", (p) => (host(p).PidMode = "host"), 'release container bad: `hostConfig.PidMode` is "host"'],
    ["no-host-namespaces", "service", (p) => ((p.taskSpec as Props).networksAdvanceds = [{ name: "host" }]), 'Swarm service bad: `taskSpec.networksAdvanceds[].name` is "host"'],
    ["no-docker-socket", "container", (p) => (p.volumes = [{ hostPath: "/var/run/docker.sock", containerPath: "/var/run/docker.sock" }]), "container bad: `volumes[].hostPath` mounts /var/run/docker.sock: whoever runs in the workload controls the host's Docker engine"],
    ["no-docker-socket", "release", (p) => (host(p).Binds = ["/run/docker.sock:/var/run/docker.sock"]), "release container bad: `hostConfig.Binds` mounts /run/docker.sock"],
    ["no-docker-socket", "service", (p) => (spec(p).mounts = [{ type: "bind", source: "/var/run/docker.sock", target: "/var/run/docker.sock" }]), "Swarm service bad: `taskSpec.containerSpec.mounts[].source` mounts /var/run/docker.sock"],
    [
      "no-public-ports",
      "container",
      (p) => {
        p.labels = [{ label: "backend-delivery.role", value: "release" }];
        p.ports = [{ internal: 8000, external: 9000 }];
      },
      'container bad: `ports[].ip` publishes port 9000 on every interface; fix: publish it on 127.0.0.1 (`ip: "127.0.0.1"`), or reach it through the front proxy',
    ],
    ["no-public-ports", "release", (p) => (host(p).PortBindings = { "8000/tcp": [{ HostIp: "0.0.0.0", HostPort: "9000" }] }), "release container bad: `hostConfig.PortBindings[].HostIp` publishes port 8000/tcp on every interface"],
    ["no-public-ports", "service", (p) => (p.endpointSpec = { ports: [{ targetPort: 8000, publishedPort: 8000 }] }), "Swarm service bad: `endpointSpec.ports[].publishedPort` publishes port 8000 on every interface"],
    [
      "prod-images-pinned",
      "release",
      (p) => {
        (p.labels as Props)["backend-delivery.environment"] = "prod";
        p.image = "ghcr.io/acme/backend:latest";
      },
      'release container bad: `image` is "ghcr.io/acme/backend:latest", not pinned by digest',
    ],
    [
      "prod-images-pinned",
      "service",
      (p) => {
        p.labels = [{ label: "backend-delivery.environment", value: "prod" }];
        spec(p).image = "ghcr.io/acme/backend:1.2";
      },
      'Swarm service bad: `taskSpec.containerSpec.image` is "ghcr.io/acme/backend:1.2", not pinned by digest',
    ],
    ["no-plain-secret-names", "container", (p) => (p.envs = [...((p.envs as string[]) ?? []), "API_TOKEN=plain"]), "container bad: `envs` holds API_TOKEN, a secret-looking name, in plain text; fix: move the value to the stack's secrets"],
    ["no-plain-secret-names", "service", (p) => (spec(p).env = { DATABASE_URL: "postgresql://u:p@h/db" }), "Swarm service bad: `taskSpec.containerSpec.env` holds DATABASE_URL"],
    ["no-plain-secret-names", "release", (p) => ((p.labels as Props)["db-password"] = "x"), "release container bad: `labels` holds db-password"],
  ];

  it.each(cases.map((c, i) => [`${c[0]} (${c[1]}) #${i}`, ...c] as const))("%s", (_label, rule, kind, mutate, expected) => {
    const props = kind === "container" ? clone(proxy) : kind === "release" ? clone(release) : service();
    mutate(props);
    const type = kind === "container" ? CONTAINER : kind === "release" ? DYNAMIC : SERVICE;
    const { violations } = runPolicies(type, "bad", props);
    expect(Object.keys(violations)).toEqual([rule]);
    expect(violations[rule]).toHaveLength(1);
    expect(violations[rule]![0]).toContain(expected);
  });

  it("covers every rule", () => {
    expect(new Set(cases.map((c) => c[0]))).toEqual(new Set(POLICIES.map((p) => p.name)));
  });

  it("lets the front proxy publish on every interface (label backend-delivery.role=proxy)", () => {
    const open = { ...clone(proxy), ports: [{ internal: 8443, external: 443, ip: "0.0.0.0" }] };
    expect(runPolicies(CONTAINER, "proxy", open).violations).toEqual({});
  });
});
