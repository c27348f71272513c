/**
 * The container hardening profile, as data.
 *
 * This module is the single source of truth for how the backend container is locked down. The
 * Pulumi program maps it to `docker.Container` arguments (see `backendService.ts`); the Docker
 * integration tests map the very same data to `docker run` flags with {@link toDockerRunArgs}, so
 * what is tested and what is deployed cannot drift apart.
 */

/** Resource limits applied to the container. */
export interface ResourceLimits {
  /** Hard memory limit in MiB (swap is capped at the same value, so the container never swaps). */
  memoryMb: number;
  /** CPU quota in cores, e.g. 0.5 or 2. */
  cpus: number;
  /** Maximum number of processes and threads inside the container. */
  pids: number;
}

/** Everything that locks the backend container down. */
export interface HardeningProfile {
  /** Numeric `uid:gid` the process runs as; never root. Matches the image's app user. */
  readonly user: string;
  /** Mount the image's root file system read-only. */
  readonly readOnlyRootFilesystem: boolean;
  /** tmpfs mounts: path -> mount options. `/tmp` is the only writable path besides the data volume. */
  readonly tmpfs: Readonly<Record<string, string>>;
  /** Where the named data volume is mounted (SQLite file and other local data). */
  readonly dataPath: string;
  /** Linux capabilities dropped; `ALL` drops every one. */
  readonly capDrop: readonly string[];
  /** Linux capabilities added back after the drop; none are needed to listen on a port above 1024. */
  readonly capAdd: readonly string[];
  /** Security options passed to the engine (`no-new-privileges` blocks setuid escalation). */
  readonly securityOpts: readonly string[];
  /** Default resource limits; stack config may override them. */
  readonly resources: Readonly<ResourceLimits>;
  /** Restart policy of the engine. */
  readonly restart: "no" | "on-failure" | "always" | "unless-stopped";
  /** Log driver and its rotation options, so a chatty container cannot fill the disk. */
  readonly logDriver: string;
  readonly logOpts: Readonly<Record<string, string>>;
  /** Seconds the engine waits after SIGTERM before SIGKILL; above the app's shutdown timeout. */
  readonly stopTimeoutSeconds: number;
  /** Signal that starts a graceful shutdown. */
  readonly stopSignal: string;
}

/** The profile every backend container runs with, staging and prod alike. */
export const hardeningProfile: HardeningProfile = Object.freeze({
  user: "10001:10001",
  readOnlyRootFilesystem: true,
  tmpfs: Object.freeze({ "/tmp": "rw,noexec,nosuid,nodev,size=64m" }),
  dataPath: "/data",
  capDrop: Object.freeze(["ALL"]),
  capAdd: Object.freeze([]),
  securityOpts: Object.freeze(["no-new-privileges:true"]),
  resources: Object.freeze({ memoryMb: 512, cpus: 1, pids: 256 }),
  restart: "unless-stopped",
  logDriver: "json-file",
  logOpts: Object.freeze({ "max-size": "10m", "max-file": "3" }),
  stopTimeoutSeconds: 30,
  stopSignal: "SIGTERM",
}) as HardeningProfile;

/**
 * The front proxy's profile: the same lock-down and smaller limits. Its configuration lives on a
 * volume at {@link HardeningProfile.dataPath}; its data (certificates, the ACME account, the internal
 * CA) on a second volume at `/data` (see proxy/frontProxy.ts), so a replaced proxy keeps them.
 */
export const proxyProfile: HardeningProfile = Object.freeze({
  ...hardeningProfile,
  // A uid of its own: the Docker provider can only limit the proxy's processes with RLIMIT_NPROC,
  // which the kernel counts per uid across the whole host, so sharing the backend's uid let the
  // backend's threads (every release of every stack) use up the proxy's allowance, and Caddy then
  // crash-looped, unable to start a thread.
  user: "10002:10002",
  tmpfs: Object.freeze({ "/tmp": "rw,noexec,nosuid,nodev,size=16m" }),
  dataPath: "/config",
  resources: Object.freeze({ memoryMb: 128, cpus: 0.5, pids: 128 }),
  stopTimeoutSeconds: 15,
}) as HardeningProfile;

/** The profile with stack-specific resource limits merged over the defaults. */
export function withResources(
  profile: HardeningProfile,
  resources: Partial<ResourceLimits> = {},
): HardeningProfile {
  return {
    ...profile,
    resources: {
      memoryMb: resources.memoryMb ?? profile.resources.memoryMb,
      cpus: resources.cpus ?? profile.resources.cpus,
      pids: resources.pids ?? profile.resources.pids,
    },
  };
}

/**
 * The `docker run` flags that apply the profile. `dataVolume` is the named volume (or host path)
 * mounted at {@link HardeningProfile.dataPath}; leave it out to mount a tmpfs there instead.
 */
export function toDockerRunArgs(profile: HardeningProfile, dataVolume?: string): string[] {
  const args: string[] = ["--user", profile.user];
  if (profile.readOnlyRootFilesystem) args.push("--read-only");
  for (const [path, options] of Object.entries(profile.tmpfs)) {
    args.push("--tmpfs", `${path}:${options}`);
  }
  if (dataVolume === undefined) {
    args.push("--tmpfs", `${profile.dataPath}:rw,nosuid,nodev,size=64m,uid=10001,gid=10001`);
  } else {
    args.push("--volume", `${dataVolume}:${profile.dataPath}`);
  }
  for (const cap of profile.capDrop) args.push("--cap-drop", cap);
  for (const cap of profile.capAdd) args.push("--cap-add", cap);
  for (const opt of profile.securityOpts) args.push("--security-opt", opt);
  const memory = `${profile.resources.memoryMb}m`;
  args.push("--memory", memory, "--memory-swap", memory);
  args.push("--cpus", String(profile.resources.cpus));
  args.push("--pids-limit", String(profile.resources.pids));
  args.push("--restart", profile.restart);
  args.push("--log-driver", profile.logDriver);
  for (const [key, value] of Object.entries(profile.logOpts)) args.push("--log-opt", `${key}=${value}`);
  args.push("--stop-timeout", String(profile.stopTimeoutSeconds));
  args.push("--stop-signal", profile.stopSignal);
  return args;
}

/** The Docker Engine API's `HostConfig` for the profile (the same settings as {@link toDockerRunArgs}). */
export interface EngineHostConfig {
  ReadonlyRootfs: boolean;
  Tmpfs: Record<string, string>;
  Mounts: { Type: "volume"; Source: string; Target: string }[];
  CapDrop: string[];
  CapAdd: string[];
  SecurityOpt: string[];
  Memory: number;
  MemorySwap: number;
  NanoCpus: number;
  PidsLimit: number;
  RestartPolicy: { Name: HardeningProfile["restart"] };
  LogConfig: { Type: string; Config: Record<string, string> };
}

/**
 * The engine API's form of the profile, for a container the program creates itself; `dataVolume`
 * is the named volume mounted at {@link HardeningProfile.dataPath}. Unlike the Docker provider, the
 * API has a pids limit of the cgroup's own.
 */
export function toHostConfig(profile: HardeningProfile, dataVolume: string): EngineHostConfig {
  const bytes = profile.resources.memoryMb * 1024 * 1024;
  return {
    ReadonlyRootfs: profile.readOnlyRootFilesystem,
    Tmpfs: { ...profile.tmpfs },
    Mounts: [{ Type: "volume", Source: dataVolume, Target: profile.dataPath }],
    CapDrop: [...profile.capDrop],
    CapAdd: [...profile.capAdd],
    SecurityOpt: [...profile.securityOpts],
    Memory: bytes,
    MemorySwap: bytes,
    NanoCpus: Math.round(profile.resources.cpus * 1e9),
    PidsLimit: profile.resources.pids,
    RestartPolicy: { Name: profile.restart },
    LogConfig: { Type: profile.logDriver, Config: { ...profile.logOpts } },
  };
}
