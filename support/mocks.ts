/**
 * Pulumi mocks shared by the program tests: every registered resource is recorded, reads of stack
 * outputs answer from a fixed table, and any other provider function call fails the test.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { stringify as toYaml } from "yaml";
import { stackImageRepository } from "../components/release/images";

export const PROJECT = "backend-delivery";

/** A resource as the engine saw it. */
export interface RecordedResource {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  /** The explicit provider's reference (`<urn>::<id>`), when the resource has one. */
  provider?: string;
}

/** `sha256:<64 hex>` derived from `seed`, so fakes are stable across runs. */
export function fakeDigest(seed: string): string {
  return `sha256:${createHash("sha256").update(seed).digest("hex")}`;
}

/** The readiness record the fake readiness check reports. */
export const FAKE_CHECKED_AT = "2030-01-01T00:00:00.000Z";
export const FAKE_VERSION = "0.1.0";
/** What the fake route reports as the time of its switch. */
export const FAKE_SWITCHED_AT = "2030-01-01T00:00:05.000Z";
/** How many packages the fake signing resource's SBOM holds. */
export const FAKE_SBOM_PACKAGES = 142;
/** The suffix a fake autonamed resource gets. */
export const FAKE_AUTONAME_SUFFIX = "a0b1c2d";
/** The random part of the fake release container's name. */
export const FAKE_RELEASE_SUFFIX = "5eed01";

/** What the fake readiness checks report besides the digest and URL: ready, on time, hardened. */
const FAKE_HARDENED_RECORD = {
  ready: true,
  checkedAt: FAKE_CHECKED_AT,
  version: FAKE_VERSION,
  hardening: { user: "10001:10001", readOnlyRootFilesystem: true, capabilitiesDropped: ["ALL"], noNewPrivileges: true },
};

export interface MockOptions {
  /** Outputs of stacks the program may read (`readStackOutputs`), by fully qualified stack name. */
  stacks?: Record<string, Record<string, unknown>>;
  /** What a read of a stack missing from `stacks` does; the default is to fail like the engine. */
  unknownStack?: "throw" | "empty";
  /** Outputs a read reports as secret, by stack name. */
  secretOutputNames?: Record<string, string[]>;
  /** Overrides the readiness record the fake readiness check returns. */
  readiness?: (inputs: Record<string, unknown>) => Record<string, unknown>;
  /** The certificate (DER, base64) the fake route (or Swarm proxy configuration) reports its proxy served, when it has TLS to load. */
  servedCertificate?: string;
  /** When the fake route (or Swarm proxy configuration) reports its switch; {@link FAKE_SWITCHED_AT} unless told. */
  switchedAt?: string;
}

/** Records resources and answers with plausible provider outputs. */
export class RecordingMocks implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  /** Stacks whose outputs the program read, in order. */
  readonly reads: string[] = [];
  constructor(private readonly options: MockOptions = {}) {}

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string | undefined; state: Record<string, unknown> } {
    const inputs = (args.inputs ?? {}) as Record<string, unknown>;
    this.resources.push({ type: args.type, name: args.name, inputs, ...(args.provider ? { provider: args.provider } : {}) });
    const id = `${args.name}-id`;
    switch (args.type) {
      case "docker:index/image:Image": {
        const digest = fakeDigest(args.name);
        const pushed = inputs.skipPush !== true;
        return { id, state: { ...inputs, repoDigest: pushed ? `${String(inputs.imageName)}@${digest}` : digest } };
      }
      case "docker:index/remoteImage:RemoteImage":
        return { id, state: { ...inputs, imageId: fakeDigest(`pulled-${String(inputs.name)}`), repoDigest: inputs.name } };
      // Named by Pulumi in a real run (the program sets no name): the resource name and a suffix.
      case "docker:index/secret:Secret":
      case "docker:index/serviceConfig:ServiceConfig":
        return { id, state: { ...inputs, name: inputs.name ?? `${args.name}-${FAKE_AUTONAME_SUFFIX}` } };
      case "docker:index/container:Container":
        return { id: fakeDigest(`container-${args.name}`).slice("sha256:".length), state: { ...inputs } };
      case "pulumi-nodejs:dynamic:Resource": {
        // Told apart by their inputs: a release container, the route of the proxy, a pulled image, image
        // retention, a readiness check.
        if ("namePrefix" in inputs) {
          const name = `${String(inputs.namePrefix)}-${FAKE_RELEASE_SUFFIX}`;
          const containerId = fakeDigest(`release-${args.name}`).slice("sha256:".length);
          return { id: containerId, state: { ...inputs, name, containerId } };
        }
        // What the route (or the Swarm target's proxy configuration) reports its proxy served, with TLS.
        const served = inputs.tls !== undefined && this.options.servedCertificate !== undefined ? { servedCertificate: this.options.servedCertificate } : {};
        if ("releaseId" in inputs) return { id, state: { ...inputs, switchedAt: this.options.switchedAt ?? FAKE_SWITCHED_AT, ...served } };
        if ("privateKey" in inputs) {
          const ref = String(inputs.imageRef);
          const signed = { signatureDigest: fakeDigest(`sig-${ref}`), attestationDigest: fakeDigest(`att-${ref}`), sbomPackages: FAKE_SBOM_PACKAGES };
          return { id, state: { ...inputs, ...signed, publicKey: "-----BEGIN PUBLIC KEY-----\nfake\n-----END PUBLIC KEY-----", publicKeyFingerprint: fakeDigest("public-key") } };
        }
        if ("imageRef" in inputs && "server" in inputs) return { id, state: { ...inputs, imageId: fakeDigest(`pulled-${String(inputs.imageRef)}`) } };
        // Image retention on every Swarm node: no node ran a task under mocks.
        if ("keepImages" in inputs && "service" in inputs) return { id, state: { ...inputs, nodes: [], unreached: [] } };
        // Image retention: it removes what the program planned.
        if ("keepImages" in inputs) return { id, state: { ...inputs, kept: [], removed: inputs.planned } };
        // The Swarm target's proxy configuration and rollout check.
        if ("proxyContainerId" in inputs && "service" in inputs) return { id, state: { ...inputs, configuredAt: this.options.switchedAt ?? FAKE_SWITCHED_AT, ...served } };
        if ("release" in inputs && "replicas" in inputs) {
          const readiness = this.options.readiness?.(inputs) ?? {
            ...FAKE_HARDENED_RECORD,
            imageDigest: inputs.imageDigest,
            url: `http://tasks.${String(inputs.service)}:${String(inputs.port)}${String(inputs.path)}`,
            replicas: { desired: inputs.replicas, ready: inputs.replicas },
          };
          return { id, state: { ...inputs, readiness, tasks: [] } };
        }
        const readiness = this.options.readiness?.(inputs) ?? {
          ...FAKE_HARDENED_RECORD,
          imageDigest: inputs.imageDigest,
          url: `http://${String(inputs.containerName)}:${String(inputs.port)}${String(inputs.path)}`,
        };
        return { id, state: { ...inputs, readiness } };
      }
      default:
        return { id, state: { ...inputs } };
    }
  }

  /** Answers the engine's `readStackOutputs` from the table of stacks; anything else fails the test. */
  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    if (args.token === "pulumi:pulumi:readStackOutputs") {
      const name = String((args.inputs as { name?: unknown }).name);
      this.reads.push(name);
      const outputs = this.options.stacks?.[name];
      if (outputs === undefined && this.options.unknownStack !== "empty") {
        // What the engine answers, as the SDK sees it: the message travels in gRPC's `details`.
        const details = `invocation of ${args.token} returned an error: unknown stack "${name}"`;
        throw Object.assign(new Error(details), { details });
      }
      return { name, outputs: outputs ?? {}, secretOutputNames: this.options.secretOutputNames?.[name] ?? [] };
    }
    throw new Error(`unexpected provider call ${args.token}`);
  }

  /** Recorded resources of one type. */
  ofType(type: string): RecordedResource[] {
    return this.resources.filter((r) => r.type === type);
  }

  /** The one resource with this name (and type, when given); fails when there is none or several. */
  byName(name: string, type?: string): RecordedResource {
    const found = this.resources.filter((r) => r.name === name && (type === undefined || r.type === type));
    if (found.length !== 1) throw new Error(`expected one resource named ${name}, found ${found.length}`);
    return found[0]!;
  }
}

/**
 * How the engine received an input: secrets arrive wrapped in Pulumi's secret envelope, which is
 * what keeps them encrypted in state.
 */
export function asSeenByEngine(value: unknown): { secret: boolean; value: unknown } {
  const sig = pulumi.runtime.specialSigKey;
  if (typeof value === "object" && value !== null && (value as Record<string, unknown>)[sig] === pulumi.runtime.specialSecretSig) {
    return { secret: true, value: (value as { value: unknown }).value };
  }
  return { secret: false, value };
}

/** The value of an Output (or plain input) once it resolves. */
export function awaitOutput<T>(value: pulumi.Input<T>): Promise<T> {
  return new Promise<T>((resolve) => pulumi.output(value).apply((v) => resolve(v as T)));
}

/**
 * Waits until every output of a program run resolves; registration is asynchronous, so the
 * resource list is only complete after this.
 */
export async function settle(outputs: Record<string, unknown>): Promise<Record<string, unknown>> {
  const entries = await Promise.all(
    Object.entries(outputs).map(async ([k, v]) => [k, await awaitOutput(v as pulumi.Input<unknown>)] as const),
  );
  await settleRegistrations();
  return Object.fromEntries(entries);
}

/**
 * Waits until every engine call a program run started has reached the mocks (the SDK's own wait,
 * internal, so reached through a cast): otherwise a late registration of one run lands in the next
 * run's mocks, which do not know its resources.
 */
export async function settleRegistrations(): Promise<void> {
  const runtime = pulumi.runtime as unknown as { waitForRPCs: () => Promise<void> };
  await runtime.waitForRPCs().catch(() => undefined);
}

/**
 * URNs the mock engine registered; a child's URN carries its parent's type
 * (`...::<parentType>$<childType>::<name>`), which is how tests check parents.
 */
export function registeredUrns(): string[] {
  const monitor = pulumi.runtime.getMonitor() as unknown as { getRegisteredResources(): Map<string, unknown> };
  return [...monitor.getRegisteredResources().keys()];
}

/** The resources each resource was registered to wait for (`dependsOn` and its inputs' resources), by name: their URNs. */
const dependencies = new Map<string, string[]>();

/** The URNs the resource named `name` depends on, as the program registered it. */
export function registeredDependencies(name: string): string[] {
  const found = dependencies.get(name);
  if (found === undefined) throw new Error(`no resource named ${name} was registered`);
  return found;
}

/** Records every registration's dependencies (the mock engine keeps none) for {@link registeredDependencies}. */
function recordDependencies(): void {
  dependencies.clear();
  type Request = { getName(): string; getDependenciesList(): string[] };
  const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource(req: Request, callback: unknown): unknown };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, callback) => {
    dependencies.set(req.getName(), req.getDependenciesList());
    return register(req, callback);
  };
}

/** The type of the parent of the resource named `name`, or undefined for a top-level resource. */
export function parentTypeOf(name: string): string | undefined {
  const urns = registeredUrns().filter((urn) => urn.endsWith(`::${name}`));
  if (urns.length !== 1) throw new Error(`expected one URN for ${name}, found ${urns.length}`);
  const chain = urns[0]!.split("::")[2]!.split("$");
  return chain.length > 1 ? chain[chain.length - 2] : undefined;
}

/** A stack's settings, as `pulumi config` would store them. */
export interface StackSetup {
  stack: string;
  /** Project config values by key (without the project prefix); objects as objects. */
  config: Record<string, unknown>;
  /** Values the stack file stores encrypted, as key paths (`secrets.DATABASE_URL`, `registryPassword`). */
  encrypted?: string[];
  /** Full keys the SDK reports as secret (`backend-delivery:secrets`); default: the encrypted tops. */
  sdkSecretKeys?: string[];
  /** Config of other namespaces, by full key (`docker:host`). */
  otherConfig?: Record<string, string>;
  preview?: boolean;
  mocks?: MockOptions;
}

function setIn(target: Record<string, unknown>, segments: string[], value: unknown): void {
  let node = target;
  for (const segment of segments.slice(0, -1)) node = node[segment] as Record<string, unknown>;
  node[segments[segments.length - 1]!] = value;
}

const tempDirs: string[] = [];
/**
 * Removes the stack files {@link setUpStack} wrote. A test file calls it in `afterAll`: a test worker
 * is stopped without running "exit" handlers. (Imported by plain scripts too, so no vitest here.)
 */
export function removeStackFiles(): void {
  for (const dir of tempDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}
process.once("exit", removeStackFiles);

/**
 * Writes the stack settings file (encrypted leaves as `secure:` placeholders), sets the engine's
 * config and mocks. Returns the mocks and the path of the stack file.
 */
export async function setUpStack(setup: StackSetup): Promise<{ mocks: RecordingMocks; stackFile: string }> {
  const fileConfig: Record<string, unknown> = JSON.parse(JSON.stringify(setup.config)) as Record<string, unknown>;
  for (const keyPath of setup.encrypted ?? []) {
    setIn(fileConfig, keyPath.split("."), { secure: "v1:ZmFrZQ==:ZW5jcnlwdGVk" });
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-stack-"));
  // A program run reads its stack file only while loading config, so the previous one can go.
  for (const old of tempDirs.splice(0)) fs.rmSync(old, { recursive: true, force: true });
  tempDirs.push(dir);
  const stackFile = path.join(dir, `Pulumi.${setup.stack}.yaml`);
  fs.writeFileSync(
    stackFile,
    toYaml({ config: Object.fromEntries(Object.entries(fileConfig).map(([k, v]) => [`${PROJECT}:${k}`, v])) }),
  );
  process.env.BACKEND_DELIVERY_STACK_FILE = stackFile;

  const values: Record<string, string> = { ...setup.otherConfig };
  for (const [key, value] of Object.entries(setup.config)) {
    values[`${PROJECT}:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
  }
  const secretKeys =
    setup.sdkSecretKeys ?? [...new Set((setup.encrypted ?? []).map((p) => `${PROJECT}:${p.split(".")[0]}`))];
  pulumi.runtime.setAllConfig(values, secretKeys);
  // The program reads its own last outputs; a stack that ran before has some, a new one none.
  const self = `organization/${PROJECT}/${setup.stack}`;
  const mocks = new RecordingMocks({ ...setup.mocks, stacks: { [self]: {}, ...setup.mocks?.stacks } });
  await pulumi.runtime.setMocks(mocks, PROJECT, setup.stack, setup.preview ?? false);
  recordDependencies();
  return { mocks, stackFile };
}

/** A valid staging stack; tests derive bad variants from it. */
export function stagingSetup(overrides: Partial<StackSetup> = {}): StackSetup {
  return {
    stack: "staging",
    config: {
      environment: "staging",
      image: { baseImage: "local/python-base:3.11-bookworm" },
      service: { hostPort: 8080, env: { LOG_LEVEL: "info" } },
      secrets: {
        DATABASE_URL: "sqlite:////data/canary-db-7f3a.sqlite3",
        SECRET_KEY: "canary-secret-key-7f3a-0123456789abcdef0123",
      },
    },
    encrypted: ["secrets.DATABASE_URL", "secrets.SECRET_KEY"],
    ...overrides,
  };
}

/** Canary substrings of the secrets in {@link stagingSetup}; none may reach a stack output. */
export const STAGING_CANARIES = ["canary-db-7f3a", "canary-secret-key-7f3a"];

/** The start-of-program checks the program asked for, in order: which check, and its arguments. */
export type RegistryCheckCall = { check: "engine" | "login" | "pull"; args: unknown[] };

/** What image retention found on a host at the program's start, in the stand-in: per host, the stack's images. */
export interface FakeHostImages {
  /** Every read the program made: endpoint, project, stack, the references it resolved. */
  reads: unknown[][];
  /** The stack's images the host holds (id, created), and the references it knows by host id. */
  images?: { id: string; created: string }[];
  hostIds?: Record<string, string>;
}

/**
 * A stand-in for components/docker/preflight.ts whose checks record their calls (and the registry
 * checks refuse when `refuse` holds a message) instead of asking a real engine, server and registry;
 * those run for real in test/deliveryInfra.docker.test.ts and the end-to-end suite. `plainValue` stays real.
 * For `vi.mock("../components/docker/preflight", (original) => recordingPreflight(original, calls))`.
 */
export async function recordingPreflight(
  importOriginal: () => Promise<unknown>,
  calls: RegistryCheckCall[],
  refuse: { message?: string } = {},
  host: FakeHostImages = { reads: [] },
): Promise<Record<string, unknown>> {
  const original = (await importOriginal()) as Record<string, unknown>;
  const record = (check: RegistryCheckCall["check"]) => async (...args: unknown[]) => {
    calls.push({ check, args });
    if (check !== "engine" && refuse.message !== undefined) throw new pulumi.RunError(refuse.message);
  };
  // Image retention's read of the host at the start: what `host` says it holds (nothing, by default).
  const readHostRetention = async (...args: unknown[]) => {
    host.reads.push(args);
    return {
      repository: stackImageRepository(String(args[1]), String(args[2])),
      images: [...(host.images ?? [])],
      hostIds: new Map(Object.entries(host.hostIds ?? {})),
    };
  };
  return { ...original, checkEngine: record("engine"), checkRegistryLogin: record("login"), checkRegistryPull: record("pull"), readHostRetention };
}
