/**
 * The SSH transport to a `ssh://[user@]host[:port]` Docker host, as the Docker provider and the
 * docker CLI do it: the system's own `ssh` running `docker system dial-stdio` on the server, with the
 * host key checked strictly, and each way the connection can fail explained in words that say what
 * to do. Travels in the serialized dynamic providers with client.ts: Node globals and `require` only.
 */

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
