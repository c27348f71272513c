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

/** Where Swarm mounts a service's secrets; the backend reads its settings there too (`secrets_dir`). */
export const SECRETS_DIR = "/run/secrets";

/** A Swarm secret mounted into the tasks as `/run/secrets/<fileName>`. */
export interface SecretMount {
  secretId: pulumi.Input<string>;
  secretName: pulumi.Input<string>;
  /** The setting's name: the file the backend reads. Stable across rotations. */
  fileName: string;
}

/** Where the tasks find their plain settings (the backend's `SETTINGS_FILE`, backend/app/core/config.py). */
export const SETTINGS_FILE = "/run/configs/backend.env";

/** A Swarm config mounted into the tasks at `fileName`. */
export interface ConfigMount {
  configId: pulumi.Input<string>;
  configName: pulumi.Input<string>;
  fileName: string;
}

/** Everything the service is made of, resolved by the component. */
export interface ServiceSpecInputs {
  /** The service's name: stable, since a new name replaces the service delete-first. */
  name: string;
  /** `<repo>@sha256:...` (a tag would be pinned by the manager and differ forever), or a local image id on a one-node swarm. */
  image: pulumi.Input<string>;
  /**
   * The environment: `PORT` alone (the image's health check reads it). One variable, because the
   * Docker provider writes a service's environment in a random order, and Swarm restarts every task
   * when it changes; the other plain settings reach the tasks as {@link SETTINGS_FILE}.
   */
  env: Readonly<Record<string, string>>;
  secrets: readonly SecretMount[];
  /** The plain settings file, a Swarm config. */
  configs: readonly ConfigMount[];
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
  if (Object.keys(inputs.env).length > 1) throw new Error(`service ${inputs.name}: one environment variable at most (see ServiceSpecInputs.env), not ${Object.keys(inputs.env).join(", ")}`);
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
        env: { ...inputs.env },
        user: profile.user,
        readOnly: profile.readOnlyRootFilesystem,
        mounts: tmpfsMounts(profile),
        capDrops: [...profile.capDrop],
        ...(profile.capAdd.length > 0 ? { capAdds: [...profile.capAdd] } : {}),
        secrets: [...inputs.secrets]
          .sort((a, b) => a.fileName.localeCompare(b.fileName))
          .map((s) => ({ secretId: s.secretId, secretName: s.secretName, fileName: s.fileName, fileUid: uid, fileGid: gid, fileMode: 0o400 })),
        configs: inputs.configs.map((c) => ({ configId: c.configId, configName: c.configName, fileName: c.fileName, fileUid: uid, fileGid: gid, fileMode: 0o400 })),
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
 * A short hash of everything that makes the task template (image, settings, secret names, profile,
 * placement): equal inputs, equal revision. A new one runs the rollout check again.
 */
export function releaseFingerprint(parts: Readonly<Record<string, unknown>>): string {
  return createHash("sha256").update(canonicalJson(parts)).digest("hex").slice(0, 16);
}

/**
 * The plain settings as the backend's settings file: `NAME="value"` lines, sorted, `\` and `"`
 * escaped (python-dotenv's double-quoted form).
 */
export function settingsFileText(settings: Readonly<Record<string, string>>): string {
  return Object.keys(settings)
    .sort()
    .map((name) => `${name}="${(settings[name] ?? "").replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"\n`)
    .join("");
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
