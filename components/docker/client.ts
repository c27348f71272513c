/**
 * The program's own conversations with a Docker engine, for the dynamic providers that need more
 * than the Docker provider offers (a release container created before the old one is deleted, a
 * command run inside a container, a file written into one, an image pulled by digest): a dockerode
 * client for a `docker:host` string (`ssh://` through ssh.ts), and the primitives built on it.
 *
 * The dynamic providers carry these functions into their own process (Pulumi serializes them), so
 * they use only Node globals and `require`d packages: no module-level objects.
 */
import Docker from "dockerode";
// The module object itself, not a named import: Pulumi's closure serializer names a captured module
// by its package ("tar-stream"), but a captured function by its file ("tar-stream/pack.js"), which
// the package's exports map does not let anyone require.
// eslint-disable-next-line @typescript-eslint/no-require-imports
import tarStream = require("tar-stream");
import { sshAgent } from "./ssh";

/** Where the Docker engine is: the Docker provider's own `docker:host` and `docker:sshOpts`. */
export interface DockerEndpoint {
  /** `unix:///path`, `tcp://host:port`, `http(s)://host:port` or `ssh://[user@]host[:port]`; the local engine when unset. */
  host?: string;
  /** Further `ssh` flags for an `ssh://` host, e.g. `["-i", "key", "-o", "UserKnownHostsFile=pinned"]`. */
  sshOpts?: string[];
}

/** An endpoint as dynamic resources record it: flat, and only what is set (an absent key is no diff). */
export function endpointInputs(endpoint: DockerEndpoint | undefined): { dockerHost?: string; dockerSshOpts?: string[] } {
  return {
    ...(endpoint?.host === undefined ? {} : { dockerHost: endpoint.host }),
    ...(endpoint?.sshOpts === undefined || endpoint.sshOpts.length === 0 ? {} : { dockerSshOpts: [...endpoint.sshOpts] }),
  };
}

/**
 * dockerode connection options for a Docker host string: `unix:///path`, `tcp://host:port`,
 * `http(s)://host:port`, `ssh://[user@]host[:port]` (through the system's ssh, see {@link sshAgent});
 * empty means `DOCKER_HOST`, then the local socket.
 */
export function dockerConnection(host: string | undefined, sshOpts: readonly string[] = []): Docker.DockerOptions {
  const value = (host ?? "").trim() || (process.env.DOCKER_HOST ?? "").trim() || "unix:///var/run/docker.sock";
  const match = /^([a-z]+):\/\/(.*)$/.exec(value);
  if (match === null) {
    throw new Error(`Docker host ${JSON.stringify(value)} is not understood; use unix:///var/run/docker.sock, tcp://HOST:PORT or ssh://USER@HOST.`);
  }
  const [, scheme, rest] = match as unknown as [string, string, string];
  if (scheme === "unix") return { socketPath: rest.startsWith("/") ? rest : `/${rest}` };
  if (scheme === "tcp" || scheme === "http" || scheme === "https") {
    const url = new URL(`${scheme === "tcp" ? "http" : scheme}://${rest}`);
    const protocol = url.protocol === "https:" ? "https" : "http";
    return { protocol, host: url.hostname, port: url.port || (protocol === "https" ? 2376 : 2375) };
  }
  // The host name is only the HTTP Host header here: the agent's ssh is the connection.
  // (docker-modem takes an `agent`; dockerode's types do not list it.)
  if (scheme === "ssh") return { protocol: "http", host: "docker", port: 80, ...{ agent: sshAgent(value, sshOpts) } };
  throw new Error(`Docker host scheme ${JSON.stringify(scheme)} is not supported; use unix://, tcp://, http(s):// or ssh://.`);
}

/** A dockerode client for the engine at `host` (see {@link dockerConnection}). */
export function dockerClient(host?: string, sshOpts?: readonly string[]): Docker {
  return new Docker(dockerConnection(host, sshOpts));
}

/**
 * Splits Docker's multiplexed stream (8-byte frame headers) into stdout, stderr, and both in the
 * order they were written; a TTY stream is raw stdout.
 */
export function demuxDockerStream(buffer: Buffer, tty: boolean): { stdout: string; stderr: string; both: string } {
  if (tty) return { stdout: buffer.toString("utf8"), stderr: "", both: buffer.toString("utf8") };
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const both: Buffer[] = [];
  let offset = 0;
  while (offset + 8 <= buffer.length) {
    const stream = buffer[offset];
    const size = buffer.readUInt32BE(offset + 4);
    const frame = buffer.subarray(offset + 8, offset + 8 + size);
    (stream === 2 ? err : out).push(frame);
    both.push(frame);
    offset += 8 + size;
  }
  return { stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8"), both: Buffer.concat(both).toString("utf8") };
}

/** What a command run inside a container printed, and how it ended. */
export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `cmd` inside the running container `id` (as the container's own user) and waits for it, at
 * most `timeoutMs`; rejects when the engine refuses or the time runs out.
 */
export async function execIn(docker: Docker, id: string, cmd: string[], timeoutMs: number): Promise<ExecResult> {
  const exec = await docker.getContainer(id).exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, Tty: false });
  const stream = await exec.start({ hijack: true, stdin: false });
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.destroy();
      reject(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (error: Error) => {
      clearTimeout(timer);
      reject(error);
    });
    stream.on("end", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  const { stdout, stderr } = demuxDockerStream(Buffer.concat(chunks), false);
  const info = await exec.inspect();
  return { exitCode: info.ExitCode ?? -1, stdout, stderr };
}

/** One entry of an archive written into a container: a file (with `content`) or a folder. */
export interface ArchiveEntry {
  /** Relative to the folder the archive is written into; folders on the way are made readable. */
  name: string;
  /** The file's text; a folder when unset. */
  content?: string;
  mode: number;
  /** Owner, numeric; root when unset. The engine keeps it: a container's non-root user can own what it must write. */
  uid?: number;
  gid?: number;
}

/**
 * Writes files and folders into the container `id` under `dir`, in one archive, through the engine's
 * archive API: the engine itself writes them, so it works into a volume of a container whose root
 * file system is read-only, running or not, and no command line or environment carries the content.
 */
export async function putEntries(docker: Docker, id: string, dir: string, entries: readonly ArchiveEntry[]): Promise<void> {
  const tar = tarStream.pack();
  const made = new Set(entries.filter((e) => e.content === undefined).map((e) => e.name));
  for (const entry of entries) {
    // Each folder on the way first, readable by the container's non-root user.
    const parts = entry.name.split("/");
    for (let i = 1; i < parts.length; i++) {
      const folder = parts.slice(0, i).join("/");
      if (made.has(folder)) continue;
      made.add(folder);
      tar.entry({ name: folder, type: "directory", mode: 0o755, mtime: new Date() });
    }
    const owner = { ...(entry.uid === undefined ? {} : { uid: entry.uid }), ...(entry.gid === undefined ? {} : { gid: entry.gid }) };
    if (entry.content === undefined) tar.entry({ name: entry.name, type: "directory", mode: entry.mode, mtime: new Date(), ...owner });
    else tar.entry({ name: entry.name, mode: entry.mode, mtime: new Date(), ...owner }, entry.content);
  }
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar) chunks.push(chunk as Buffer);
  await docker.getContainer(id).putArchive(Buffer.concat(chunks), { path: dir });
}

/** Writes one file into the container `id` at `dir/name` (see {@link putEntries}). */
export async function putFile(docker: Docker, id: string, dir: string, name: string, content: string, mode = 0o644): Promise<void> {
  await putEntries(docker, id, dir, [{ name, content, mode }]);
}

/** What the container `id` logged (stdout and stderr, in order) since `sinceSeconds` (seconds since the epoch). */
export async function logsSince(docker: Docker, id: string, sinceSeconds: number): Promise<string> {
  const container = docker.getContainer(id);
  const raw = (await container.logs({ stdout: true, stderr: true, follow: false, since: sinceSeconds })) as unknown as Buffer;
  const tty = (await container.inspect()).Config.Tty;
  return demuxDockerStream(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)), tty).both;
}

/** Credentials for one registry, as the engine's API takes them. */
export interface RegistryAuth {
  serveraddress: string;
  username: string;
  password: string;
}

/**
 * Pulls `ref` (`<repo>@sha256:...`) onto the engine with `auth`, and returns the pulled image's id.
 * The engine reports a refused pull in its progress stream, not as a status: that error is raised.
 */
export async function pullImage(docker: Docker, ref: string, auth: RegistryAuth): Promise<string> {
  const at = ref.lastIndexOf("@");
  // The credentials go in the X-Registry-Auth header (createImage's first argument), never the query.
  const stream = await docker.createImage(auth, { fromImage: ref.slice(0, at), tag: ref.slice(at + 1) });
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (error: Error | null, events: { error?: string; errorDetail?: { message?: string } }[]) => {
      const failed = error?.message ?? events.find((e) => e.error !== undefined || e.errorDetail !== undefined)?.error;
      if (failed !== undefined) reject(new Error(failed));
      else resolve();
    });
  });
  return (await docker.getImage(ref).inspect()).Id;
}
