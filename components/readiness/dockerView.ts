/**
 * The engine's side of the readiness probe: a {@link ContainerView} of one container through
 * dockerode, and the connection options for a Docker host string. Like probe.ts it travels with the
 * serialized dynamic provider, so it holds only plain functions and `dockerode` (captured as
 * `require("dockerode")`).
 */
import Docker from "dockerode";
import type { ContainerView } from "./probe";

/**
 * dockerode connection options for a Docker host string: `unix:///path`, `tcp://host:port`,
 * `http(s)://host:port`, `ssh://user@host`; empty means `DOCKER_HOST`, then the local socket.
 */
export function dockerConnection(host: string | undefined): Docker.DockerOptions {
  const value = (host ?? "").trim() || (process.env.DOCKER_HOST ?? "").trim() || "unix:///var/run/docker.sock";
  const match = /^([a-z]+):\/\/(.*)$/.exec(value);
  if (match === null) {
    throw new Error(`Docker host ${JSON.stringify(value)} is not understood; use unix:///var/run/docker.sock or tcp://HOST:PORT.`);
  }
  const [, scheme, rest] = match as unknown as [string, string, string];
  if (scheme === "unix") return { socketPath: rest.startsWith("/") ? rest : `/${rest}` };
  const url = new URL(`${scheme === "tcp" ? "http" : scheme}://${rest}`);
  if (scheme === "tcp" || scheme === "http" || scheme === "https") {
    const protocol = url.protocol === "https:" ? "https" : "http";
    return { protocol, host: url.hostname, port: url.port || (protocol === "https" ? 2376 : 2375) };
  }
  if (scheme === "ssh") {
    return { protocol: "ssh", host: url.hostname, port: url.port || 22, username: url.username || undefined };
  }
  throw new Error(`Docker host scheme ${JSON.stringify(scheme)} is not supported; use unix://, tcp://, http(s):// or ssh://.`);
}

/** Splits Docker's multiplexed log stream (8-byte frame headers) into text; a TTY stream is raw. */
export function demuxDockerLogs(buffer: Buffer, tty: boolean): string {
  if (tty) return buffer.toString("utf8");
  const parts: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const size = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString("utf8");
}

/** The engine's view of one container, through dockerode. */
export function dockerContainerView(containerId: string, dockerHost?: string): ContainerView {
  const container = new Docker(dockerConnection(dockerHost)).getContainer(containerId);
  return {
    async state() {
      const info = await container.inspect();
      return {
        status: info.State.Status,
        exitCode: info.State.ExitCode,
        health: info.State.Health?.Status,
        restartCount: info.RestartCount,
      };
    },
    async logs(lines) {
      const info = await container.inspect();
      const raw = (await container.logs({ stdout: true, stderr: true, follow: false, tail: lines })) as unknown as Buffer;
      const text = demuxDockerLogs(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)), info.Config.Tty);
      return text.split(/\r?\n/).filter((l) => l.length > 0).slice(-lines);
    },
    async hardening() {
      const info = await container.inspect();
      const securityOpts: string[] = info.HostConfig.SecurityOpt ?? [];
      return {
        user: info.Config.User ?? "",
        readOnlyRootFilesystem: info.HostConfig.ReadonlyRootfs === true,
        capabilitiesDropped: [...(info.HostConfig.CapDrop ?? [])],
        noNewPrivileges: securityOpts.some((o) => o === "no-new-privileges" || o === "no-new-privileges:true" || o === "no-new-privileges=true"),
      };
    },
  };
}
