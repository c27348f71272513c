/**
 * The program's own conversations with a Docker engine, for the dynamic providers that need more
 * than the Docker provider offers (a release container created before the old one is deleted, a
 * command run inside a container, a file written into one): a dockerode client for a `docker:host`
 * string, and the two primitives built on it.
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

/** The parts of an `ssh://[user@]host[:port]` Docker host. */
export interface SshTarget {
  user?: string;
  host: string;
  port?: string;
}

/** The user, host and port of an `ssh://` Docker host; undefined for any other. */
export function sshTarget(host: string | undefined): SshTarget | undefined {
  const value = (host ?? "").trim();
  if (!value.startsWith("ssh://")) return undefined;
  const url = new URL(value);
  return {
    ...(url.username === "" ? {} : { user: decodeURIComponent(url.username) }),
    // URL keeps an IPv6 host in brackets; ssh wants it bare.
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    ...(url.port === "" ? {} : { port: url.port }),
  };
}

/**
 * The `ssh` arguments that open a connection to the engine behind `target`, the way the Docker CLI
 * and the Docker provider do (`docker system dial-stdio` on the server). The host key must already be
 * pinned in known_hosts and nothing may prompt: ssh keeps the first value it is given for an option,
 * so these two come before `sshOpts` and nothing there can weaken them.
 */
export function sshDialArgs(target: SshTarget, sshOpts: readonly string[] = []): string[] {
  return [
    "-o",
    "StrictHostKeyChecking=yes",
    "-o",
    "BatchMode=yes",
    ...sshOpts,
    "-o",
    "ConnectTimeout=15",
    "-T",
    ...(target.user === undefined ? [] : ["-l", target.user]),
    ...(target.port === undefined ? [] : ["-p", target.port]),
    "--",
    target.host,
    "docker",
    "system",
    "dial-stdio",
  ];
}

/**
 * What went wrong, in words that name the fix, from what `ssh` (or `docker` on the server) printed
 * when the connection to `host` ended without an answer.
 */
export function explainSshFailure(host: string, stderr: string, exitCode: number | null): string {
  const target = sshTarget(host);
  const user = target?.user ?? "the SSH user";
  const where = target === undefined ? host : `${target.host}${target.port === undefined ? "" : ` port ${target.port}`}`;
  const keyscan = `ssh-keyscan${target?.port === undefined ? "" : ` -p ${target.port}`} ${target?.host ?? "<server>"}`;
  const said = stderr
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== "" && !/^@+$/.test(line) && !line.startsWith("@@@"))
    .slice(-3)
    .join(" / ")
    .slice(0, 400);
  const prefix = `Docker host ${host}:`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed|host key .* differs/i.test(stderr)) {
    return (
      `${prefix} the server's host key does not match the one pinned in known_hosts (the server was re-keyed, or this is not the server you meant); ` +
      `nothing was sent. Check the new key's fingerprint with the server's owner before you replace the known_hosts line (${keyscan}). ssh said: ${said}`
    );
  }
  if (/Host key verification failed|No .*host key is known|host key is not known/i.test(stderr)) {
    return (
      `${prefix} the server's host key is not pinned in known_hosts, so the connection was refused. ` +
      `Pin it: compare \`${keyscan}\` with the key on the server (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and add that line to ~/.ssh/known_hosts, ` +
      `or to the file that -o UserKnownHostsFile=... in docker:sshOpts names. ssh said: ${said}`
    );
  }
  if (/Permission denied \(/i.test(stderr)) {
    return (
      `${prefix} the server refused the SSH key of ${user}. Add the deploy key's public half to ~${user}/.ssh/authorized_keys on the server, ` +
      `or point docker:sshOpts at the right key (-i <key file>). ssh said: ${said}`
    );
  }
  if (/Could not resolve hostname|Connection refused|Connection timed out|No route to host|Network is unreachable|Connection closed by|Connection reset/i.test(stderr)) {
    return `${prefix} no SSH connection to ${where}: check the host and port in docker:host and that sshd runs there. ssh said: ${said}`;
  }
  if (/permission denied while trying to connect to the (Docker )?daemon/i.test(stderr)) {
    return `${prefix} ${user} may not use Docker on the server: add it to the docker group there (sudo usermod -aG docker ${user}) and connect again. docker said: ${said}`;
  }
  if (/docker: (command )?not found|docker: No such file/i.test(stderr)) {
    return `${prefix} the server has no docker command for ${user}: install Docker Engine there and make sure it is on the PATH of non-interactive SSH sessions. The server said: ${said}`;
  }
  if (/Cannot connect to the Docker daemon|Is the docker daemon running/i.test(stderr)) {
    return `${prefix} the Docker engine on the server is not running: start it there (systemctl start docker). docker said: ${said}`;
  }
  return `${prefix} the SSH connection ended (exit ${exitCode ?? "by signal"}) before the engine answered. ssh said: ${said || "nothing"}`;
}

/**
 * An HTTP agent whose every connection is a fresh `ssh ... docker system dial-stdio` to `host`: the
 * system's own ssh, so known_hosts, keys, agents and ~/.ssh/config work as for the Docker provider.
 * A connection that ends before any answer fails with {@link explainSshFailure}'s message.
 */
export function sshAgent(host: string, sshOpts: readonly string[] = []): import("node:http").Agent {
  // Required here, not imported: these functions travel in the serialized dynamic providers.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Agent } = require("node:http") as typeof import("node:http");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Duplex } = require("node:stream") as typeof import("node:stream");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require("node:child_process") as typeof import("node:child_process");
  const target = sshTarget(host);
  if (target === undefined) throw new Error(`Docker host ${JSON.stringify(host)} is not an ssh:// host.`);
  const agent = new Agent({ keepAlive: false });
  (agent as unknown as { createConnection: () => import("node:stream").Duplex }).createConnection = () => {
    const child = spawn("ssh", sshDialArgs(target, sshOpts), { stdio: ["pipe", "pipe", "pipe"] });
    const stderr: Buffer[] = [];
    let answered = false;
    const socket = new Duplex({
      read() {
        child.stdout.resume();
      },
      write(chunk: Buffer, _encoding, done) {
        // A pipe that broke is explained when ssh exits (below), not as EPIPE.
        if (child.stdin.writable) child.stdin.write(chunk, () => done());
        else done();
      },
      final(done) {
        child.stdin.end();
        done();
      },
      destroy(error, done) {
        if (child.exitCode === null) child.kill();
        done(error);
      },
    });
    child.stdout.on("data", (chunk: Buffer) => {
      answered = true;
      if (!socket.push(chunk)) child.stdout.pause();
    });
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.stdin.on("error", () => undefined);
    child.on("error", (error) => socket.destroy(new Error(`Docker host ${host}: could not run ssh: ${error.message}`)));
    child.on("close", (code) => {
      if (answered || code === 0) socket.push(null);
      else socket.destroy(new Error(explainSshFailure(host, Buffer.concat(stderr).toString("utf8"), code)));
    });
    // What Node's HTTP client may call on a socket; a pipe has nothing to set.
    Object.assign(socket, { setTimeout: () => socket, setNoDelay: () => socket, setKeepAlive: () => socket, ref: () => socket, unref: () => socket });
    return socket;
  };
  return agent;
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

/**
 * Writes one file into the container `id` at `dir/name` through the engine's archive API: the engine
 * itself writes it, so it works into a volume of a container whose root file system is read-only,
 * running or not.
 */
export async function putFile(docker: Docker, id: string, dir: string, name: string, content: string, mode = 0o644): Promise<void> {
  const tar = tarStream.pack();
  // Each folder on the way first, readable by the container's non-root user.
  const parts = name.split("/");
  for (let i = 1; i < parts.length; i++) tar.entry({ name: parts.slice(0, i).join("/"), type: "directory", mode: 0o755, mtime: new Date() });
  tar.entry({ name, mode, mtime: new Date() }, content);
  tar.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of tar) chunks.push(chunk as Buffer);
  await docker.getContainer(id).putArchive(Buffer.concat(chunks), { path: dir });
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
