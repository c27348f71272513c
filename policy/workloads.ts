/**
 * Where each hardening fact lives in the inputs of the three kinds of workload this program
 * registers: the Docker provider's `Container` (the front proxy), its Swarm `Service`, and the
 * release container of our own (a dynamic resource whose inputs carry the Docker Engine API's
 * `HostConfig`, components/release/provider.ts). Every accessor reads only the inputs it needs: a
 * policy that touches a value still unknown in a preview is reported by CrossGuard as not run
 * ("can't run policy during preview"), so reading less keeps more rules running. Pure.
 */

/** A resource's inputs as CrossGuard hands them over: plain JSON, secrets decrypted. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Props = Record<string, any>;

export const CONTAINER = "docker:index/container:Container";
export const SERVICE = "docker:index/service:Service";
export const DYNAMIC = "pulumi-nodejs:dynamic:Resource";

/** The workloads the pack looks at. */
export type Kind = "container" | "service" | "release";

/** The label that names the front proxy, the one workload that may publish a port to every interface. */
export const ROLE_LABEL = "backend-delivery.role";
/** The label that names the stack's role (`staging`, `prod`). */
export const ENVIRONMENT_LABEL = "backend-delivery.environment";

/** The workload a resource is, or undefined for any other resource. */
export function kindOf(type: string, props: Props): Kind | undefined {
  if (type === CONTAINER) return "container";
  if (type === SERVICE) return "service";
  // Our dynamic resources are told apart by their inputs; only the release container has these.
  if (type === DYNAMIC && "namePrefix" in props && "hostConfig" in props) return "release";
  return undefined;
}

/** What a message calls the workload. */
export const KIND_LABEL: Record<Kind, string> = { container: "container", service: "Swarm service", release: "release container" };

const spec = (p: Props): Props => p.taskSpec?.containerSpec ?? {};
const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : []);
const strings = (value: unknown): string[] => list(value).map(String);

/** Labels as one map: the provider's `[{ label, value }]` lists, or the release's own object. */
export function labelsOf(kind: Kind, p: Props): Record<string, string> {
  if (kind === "release") return { ...(p.labels ?? {}) };
  const entries = kind === "service" ? [...list(p.labels), ...list(spec(p).labels)] : list(p.labels);
  return Object.fromEntries(entries.map((e) => [String((e as Props).label), String((e as Props).value)]));
}

/** The property (as a user would spell it) and its value, for each fact. */
export interface Fact<T> {
  property: string;
  value: T;
}

export const facts = {
  user: (kind: Kind, p: Props): Fact<string | undefined> =>
    kind === "service" ? { property: "taskSpec.containerSpec.user", value: spec(p).user } : { property: "user", value: p.user },
  readOnly: (kind: Kind, p: Props): Fact<unknown> =>
    kind === "container"
      ? { property: "readOnly", value: p.readOnly }
      : kind === "service"
        ? { property: "taskSpec.containerSpec.readOnly", value: spec(p).readOnly }
        : { property: "hostConfig.ReadonlyRootfs", value: p.hostConfig?.ReadonlyRootfs },
  capDrop: (kind: Kind, p: Props): Fact<string[]> =>
    kind === "container"
      ? { property: "capabilities.drops", value: strings(p.capabilities?.drops) }
      : kind === "service"
        ? { property: "taskSpec.containerSpec.capDrops", value: strings(spec(p).capDrops) }
        : { property: "hostConfig.CapDrop", value: strings(p.hostConfig?.CapDrop) },
  securityOpts: (kind: "container" | "release", p: Props): Fact<string[]> =>
    kind === "container" ? { property: "securityOpts", value: strings(p.securityOpts) } : { property: "hostConfig.SecurityOpt", value: strings(p.hostConfig?.SecurityOpt) },
  memory: (kind: Kind, p: Props): Fact<unknown> =>
    kind === "container"
      ? { property: "memory", value: p.memory }
      : kind === "service"
        ? { property: "taskSpec.resources.limits.memoryBytes", value: p.taskSpec?.resources?.limits?.memoryBytes }
        : { property: "hostConfig.Memory", value: p.hostConfig?.Memory },
  /** The provider's `Container` has no pids limit; the nproc ulimit on the non-root user is the one it has. */
  pids: (kind: "container" | "release", p: Props): Fact<unknown> =>
    kind === "container"
      ? { property: "ulimits[nproc].hard", value: (list(p.ulimits) as Props[]).find((u) => u.name === "nproc")?.hard }
      : { property: "hostConfig.PidsLimit", value: p.hostConfig?.PidsLimit },
  privileged: (kind: "container" | "release", p: Props): Fact<unknown> =>
    kind === "container" ? { property: "privileged", value: p.privileged } : { property: "hostConfig.Privileged", value: p.hostConfig?.Privileged },
  /** Namespace settings that share the host's: `[property, value]` of each one that says "host". */
  hostNamespaces: (kind: Kind, p: Props): Fact<string>[] => {
    const named = (property: string, value: unknown) => ({ property, value: String(value ?? "") });
    const all =
      kind === "container"
        ? [named("networkMode", p.networkMode), named("pidMode", p.pidMode), ...list(p.networksAdvanced).map((n) => named("networksAdvanced[].name", (n as Props).name))]
        : kind === "service"
          ? list(p.taskSpec?.networksAdvanceds).map((n) => named("taskSpec.networksAdvanceds[].name", (n as Props).name))
          : [named("network", p.network), named("hostConfig.NetworkMode", p.hostConfig?.NetworkMode), named("hostConfig.PidMode", p.hostConfig?.PidMode)];
    return all.filter((f) => f.value === "host");
  },
  /** Host paths mounted into the workload. */
  hostPaths: (kind: Kind, p: Props): Fact<string>[] => {
    if (kind === "container") {
      return [
        ...list(p.volumes).map((v) => ({ property: "volumes[].hostPath", value: String((v as Props).hostPath ?? "") })),
        ...list(p.mounts).map((m) => ({ property: "mounts[].source", value: String((m as Props).source ?? "") })),
      ];
    }
    if (kind === "service") return list(spec(p).mounts).map((m) => ({ property: "taskSpec.containerSpec.mounts[].source", value: String((m as Props).source ?? "") }));
    return [
      ...strings(p.hostConfig?.Binds).map((b) => ({ property: "hostConfig.Binds", value: b.split(":")[0] ?? "" })),
      ...list(p.hostConfig?.Mounts).map((m) => ({ property: "hostConfig.Mounts[].Source", value: String((m as Props).Source ?? "") })),
    ];
  },
  /** Published ports and the host address each listens on ("" for every interface). */
  publishedPorts: (kind: Kind, p: Props): Fact<{ port: string; ip: string }>[] => {
    if (kind === "container") {
      return list(p.ports).map((port) => ({ property: "ports[].ip", value: { port: String((port as Props).external ?? (port as Props).internal), ip: String((port as Props).ip ?? "") } }));
    }
    if (kind === "service") {
      // Swarm publishes on every interface of every node: there is no address to bind to.
      return list(p.endpointSpec?.ports)
        .filter((port) => (port as Props).publishedPort !== undefined)
        .map((port) => ({ property: "endpointSpec.ports[].publishedPort", value: { port: String((port as Props).publishedPort), ip: "" } }));
    }
    return Object.entries((p.hostConfig?.PortBindings ?? {}) as Record<string, Props[]>).flatMap(([port, bindings]) =>
      list(bindings).map((b) => ({ property: "hostConfig.PortBindings[].HostIp", value: { port, ip: String((b as Props).HostIp ?? "") } })),
    );
  },
  image: (kind: Kind, p: Props): Fact<unknown> =>
    kind === "service" ? { property: "taskSpec.containerSpec.image", value: spec(p).image } : { property: "image", value: p.image },
  /** Environment variable names stored in plain text in the workload's definition. */
  envNames: (kind: "container" | "service", p: Props): Fact<string>[] =>
    kind === "container"
      ? strings(p.envs).map((e) => ({ property: "envs", value: e.split("=")[0] ?? "" }))
      : Object.keys(spec(p).env ?? {}).map((name) => ({ property: "taskSpec.containerSpec.env", value: name })),
};
