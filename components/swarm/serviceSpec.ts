/**
 * The Swarm service of the backend, as `docker.Service` arguments: the hardening profile, the image
 * by digest, the plain settings in the environment and the secrets as files, endpoint mode `dnsrr`
 * (no VIP: it needs the kernel's IPVS), and Swarm's own rollout made explicit (its defaults are
 * stop-first, pause on failure and a 5 s monitor). Pure: no resources, tested without mocks.
 */
import { createHash } from "node:crypto";
import type * as docker from "@pulumi/docker";
import type * as pulumi from "@pulumi/pulumi";
import { canonicalJson } from "../canonicalJson";
import type { SwarmSettings } from "../config/schema";
import type { HardeningProfile } from "../hardening";
import { RELEASE_ENV } from "./tasks";

/** Where Swarm mounts a service's secrets; the backend reads its settings there too (`secrets_dir`). */
export const SECRETS_DIR = "/run/secrets";

/** A Swarm secret mounted into the tasks as `/run/secrets/<fileName>`. */
export interface SecretMount {
  secretId: pulumi.Input<string>;
  secretName: pulumi.Input<string>;
  /** The setting's name: the file the backend reads. Stable across rotations. */
  fileName: string;
}

/** Everything the service is made of, resolved by the component. */
export interface ServiceSpecInputs {
  /** The service's name: stable, since a new name replaces the service delete-first. */
  name: string;
  /** `<repo>@sha256:...` (a tag would be pinned by the manager and differ forever), or a local image id on a one-node swarm. */
  image: pulumi.Input<string>;
  /** Plain settings, `NAME -> value`; never a secret's name. */
  env: Readonly<Record<string, string>>;
  secrets: readonly SecretMount[];
  /** Fingerprint of the task template ({@link releaseFingerprint}), carried in the environment. */
  release: pulumi.Input<string>;
  profile: HardeningProfile;
  swarm: SwarmSettings;
  /** The stack's overlay network, by id (stable: a change replaces the service). */
  network: pulumi.Input<string>;
  labels: Readonly<Record<string, string>>;
}

/**
 * What the manager fills in itself and the program does not manage: the platforms it reads from the
 * image's manifest in the registry. Without it, every preview after the first shows the service changed.
 */
export const SERVICE_IGNORE_CHANGES = ["taskSpec.placement.platforms"];

/**
 * The tasks' sysctls: no ICMP sockets for any group (Docker 20.10 opens them to every user; the
 * backend never pings). Also why there is one at all: left unset, the provider plans `sysctl` as
 * unknown whenever anything else in the container spec changes, and a change of `sysctl` replaces the
 * service, deleting it first: an outage on every release. Never change it on a running stack.
 */
export const TASK_SYSCTLS: Readonly<Record<string, string>> = Object.freeze({ "net.ipv4.ping_group_range": "1 0" });

/** Bytes in a `size=64m` (k, m, g) tmpfs option; undefined without one. */
export function tmpfsBytes(options: string): number | undefined {
  const match = /(?:^|,)size=(\d+)([kmg]?)(?:,|$)/i.exec(options);
  if (match === null) return undefined;
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(match[2] ?? "").toLowerCase() as "" | "k" | "m" | "g"];
  return Number(match[1]) * unit;
}

/**
 * The profile's tmpfs mounts, and one on the data path: replicas on several nodes share no local
 * volume, so the data path is scratch space (the database is PostgreSQL). A service's tmpfs takes
 * only a size and a mode; world-writable with the sticky bit, like /tmp, for the non-root user.
 */
export function tmpfsMounts(profile: HardeningProfile): docker.types.input.ServiceTaskSpecContainerSpecMount[] {
  const paths = { ...profile.tmpfs, [profile.dataPath]: profile.tmpfs["/tmp"] ?? "size=64m" };
  return Object.entries(paths)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([target, options]) => {
      const sizeBytes = tmpfsBytes(options);
      return { type: "tmpfs", target, tmpfsOptions: { mode: 0o1777, ...(sizeBytes === undefined ? {} : { sizeBytes }) } };
    });
}

/** A Go duration for Swarm: whole seconds. */
const seconds = (value: number): string => `${value}s`;

/**
 * Swarm's rollout, spelled out: a new task starts first, takes traffic once its health check passes,
 * and only then does an old one stop; a task that fails within the monitor window rolls the service
 * back, start-first as well. `maxFailureRatio` 0: one failed task is enough.
 */
export function rolloutConfigs(swarm: SwarmSettings): Pick<docker.ServiceArgs, "updateConfig" | "rollbackConfig"> {
  const common = { parallelism: swarm.update.parallelism, delay: "0s", monitor: seconds(swarm.update.monitorSeconds), maxFailureRatio: "0", order: "start-first" };
  return {
    updateConfig: { ...common, failureAction: "rollback" },
    // A rollback that fails too has nowhere to go: Swarm pauses, and the rollout check says so.
    rollbackConfig: { ...common, failureAction: "pause" },
  };
}

/** The `docker.Service` arguments for `inputs`. */
export function serviceArgs(inputs: ServiceSpecInputs): docker.ServiceArgs {
  const { profile, swarm } = inputs;
  const clash = inputs.secrets.find((s) => s.fileName in inputs.env);
  // A leftover variable would shadow the secret file (pydantic-settings reads the environment first).
  if (clash !== undefined) throw new Error(`service ${inputs.name}: ${clash.fileName} is both a plain setting and a secret; keep it in secrets`);
  const [uid = "10001", gid = uid] = profile.user.split(":");
  const labelList = (labels: Readonly<Record<string, pulumi.Input<string>>>) =>
    Object.entries(labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([label, value]) => ({ label, value }));
  return {
    name: inputs.name,
    labels: labelList(inputs.labels),
    mode: { replicated: { replicas: swarm.replicas } },
    // Tasks answer at tasks.<name> by DNS round robin; a VIP would need IPVS, which not every kernel has.
    endpointSpec: { mode: "dnsrr" },
    ...rolloutConfigs(swarm),
    taskSpec: {
      containerSpec: {
        image: inputs.image,
        env: { ...inputs.env, [RELEASE_ENV]: inputs.release },
        user: profile.user,
        readOnly: profile.readOnlyRootFilesystem,
        mounts: tmpfsMounts(profile),
        capDrops: [...profile.capDrop],
        ...(profile.capAdd.length > 0 ? { capAdds: [...profile.capAdd] } : {}),
        secrets: [...inputs.secrets]
          .sort((a, b) => a.fileName.localeCompare(b.fileName))
          .map((s) => ({ secretId: s.secretId, secretName: s.secretName, fileName: s.fileName, fileUid: uid, fileGid: gid, fileMode: 0o400 })),
        sysctl: { ...TASK_SYSCTLS },
        stopSignal: profile.stopSignal,
        stopGracePeriod: seconds(profile.stopTimeoutSeconds),
        // Fixed for the life of the stack: a change of a container label replaces the service, delete-first.
        labels: labelList(inputs.labels),
        // No healthcheck here: the image's own HEALTHCHECK is the task's health, as on a single host.
      },
      resources: {
        limits: { memoryBytes: profile.resources.memoryMb * 1024 * 1024, nanoCpus: Math.round(profile.resources.cpus * 1e9) },
      },
      // `window` as the engine reads it back ("0s"), or every preview shows a change.
      restartPolicy: { condition: "any", delay: "1s", maxAttempts: 0, window: "0s" },
      placement: {
        constraints: [...swarm.placement.constraints],
        ...(swarm.placement.maxReplicasPerNode === undefined ? {} : { maxReplicas: swarm.placement.maxReplicasPerNode }),
      },
      networksAdvanceds: [{ id: inputs.network }],
      logDriver: { name: profile.logDriver, options: { ...profile.logOpts } },
    },
  };
}

/**
 * The release a task template stands for: a short hash of everything that makes it (image, settings,
 * secret names, profile). Equal inputs, equal release; it is what the rollout check waits for.
 */
export function releaseFingerprint(parts: Readonly<Record<string, unknown>>): string {
  return createHash("sha256").update(canonicalJson(parts)).digest("hex").slice(0, 16);
}

/**
 * The Pulumi name of the Swarm secret for one stack secret: `<prefix>-<NAME>-<tag>`, the tag changing
 * with the value (envMapping.ts `secretTags`). A new value is a new resource, created before the old
 * one is deleted at the end of the update (a Swarm secret is immutable); Pulumi names the Swarm secret
 * after it with 8 more characters, and Swarm takes at most 64, so the prefix gives way.
 */
export function secretResourceName(prefix: string, name: string, tag: string): string {
  const room = 64 - 8 - name.length - tag.length - 2;
  return `${prefix.slice(0, Math.max(1, room)).replace(/-+$/, "")}-${name}-${tag}`;
}

/** Our deadline for one rollout: the readiness budget for each batch of tasks Swarm replaces, plus its monitor window. */
export function rolloutTimeoutSeconds(swarm: SwarmSettings, readinessTimeoutSeconds: number): number {
  const batches = Math.ceil(swarm.replicas / swarm.update.parallelism);
  return batches * (readinessTimeoutSeconds + swarm.update.monitorSeconds);
}
