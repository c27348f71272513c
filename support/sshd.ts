/**
 * A throwaway SSH server that stands in for a deploy target reached as `ssh://deploy@host`: the
 * `local/sshd:bookworm` image (scripts/build-sshd-image.sh) on a loopback port, with this machine's
 * Docker socket mounted, so that `docker -H ssh://deploy@127.0.0.1:<port>` (and the Docker provider
 * with `docker:host` set so) drives this machine's engine through a real `sshd`.
 *
 * Logins are the `deploy` user with a key pair made per start, and the client trusts only the host
 * key the container made at its own start, read from inside the container (never taken from the
 * network on first use, which would prove nothing).
 */
import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { docker, inspectContainer, removeContainers, uniqueName } from "./docker";
import { waitFor } from "./wait";

/** The local SSH server image. */
export const LOCAL_SSHD_IMAGE = process.env.SSHD_IMAGE ?? "local/sshd:bookworm";

/** Options of {@link startSshd}. */
export interface StartSshdOptions {
  /** Image to run; {@link LOCAL_SSHD_IMAGE} unless told. */
  image?: string;
  /** The engine's socket on this machine, mounted at /var/run/docker.sock; that path unless told. */
  dockerSocket?: string;
}

/** A running throwaway SSH server. */
export interface Sshd {
  host: "127.0.0.1";
  /** The loopback port published for the container's port 22. */
  port: number;
  user: "deploy";
  /** `ssh://deploy@127.0.0.1:<port>`: the Docker provider's `host` and the CLI's `-H`. */
  dockerHost: string;
  /** The client's private ed25519 key (mode 600), the only key `deploy` accepts. */
  identityFile: string;
  /** A known_hosts file holding {@link knownHostsLine} only. */
  knownHostsFile: string;
  /** `[127.0.0.1]:<port> ssh-ed25519 <key>`: the container's own host key, pinned. */
  knownHostsLine: string;
  /**
   * `ssh` options that trust only the pinned host key, offer only the client key and never ask:
   * what the Docker provider's `sshOpts` takes, and what `ssh` takes before the destination.
   */
  sshOpts: string[];
  /** The server container's name. */
  container: string;
  /**
   * Environment for a `docker` CLI that reaches the engine through this server: DOCKER_HOST, and
   * PATH led by an `ssh` that adds {@link sshOpts} (the CLI runs the `ssh` on PATH and reads no
   * options of its own for it).
   */
  dockerCliEnv(): Record<string, string>;
  /** Writes a known_hosts file that names a different, freshly made key for this host and port. */
  wrongKnownHosts(): Promise<string>;
  /** Removes the container and the key files. Safe to call twice. */
  stop(): Promise<void>;
}

/** Runs a program and resolves with its exit code and output; rejects only when it cannot start. */
export function run(program: string, args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(program, [...args], { env: { ...process.env, ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null && typeof error.code !== "number") {
        if (error.code === "ENOENT") reject(new Error(`cannot run ${program}: not installed`));
        else if (child.killed) resolve({ code: -1, stdout, stderr: `${stderr}\n(killed after 60 s)` });
        else reject(error);
        return;
      }
      resolve({ code: error === null ? 0 : (error.code as number), stdout, stderr });
    });
  });
}

async function newKeyPair(file: string, comment: string): Promise<string> {
  const made = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  if (made.code !== 0) throw new Error(`ssh-keygen failed: ${made.stderr.trim()}`);
  chmodSync(file, 0o600);
  return readFileSync(`${file}.pub`, "utf8").trim();
}

/** `<type> <base64>` of a public key line, without its comment. */
function keyOf(publicKeyLine: string): string {
  const [type, key] = publicKeyLine.trim().split(/\s+/);
  if (type !== "ssh-ed25519" || key === undefined || !/^[A-Za-z0-9+/=]+$/.test(key)) {
    throw new Error(`not an ssh-ed25519 public key: ${publicKeyLine.slice(0, 60)}`);
  }
  return `${type} ${key}`;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Starts the server, pins its host key, checks one login, and returns how to reach it. */
export async function startSshd(options: StartSshdOptions = {}): Promise<Sshd> {
  const image = options.image ?? LOCAL_SSHD_IMAGE;
  const socket = options.dockerSocket ?? "/var/run/docker.sock";
  const found = await docker(["image", "inspect", image], { allowFailure: true });
  if (found.code !== 0) throw new Error(`image ${image} is missing. Build it with: bash scripts/build-sshd-image.sh`);
  if (!existsSync(socket)) throw new Error(`no Docker socket at ${socket} to hand to the SSH server`);

  const container = uniqueName("sshd");
  const dir = mkdtempSync(join(tmpdir(), "sshd-test-"));
  chmodSync(dir, 0o700);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await removeContainers(container);
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const identityFile = join(dir, "id_ed25519");
    const clientKey = await newKeyPair(identityFile, `${container}-client`);
    await docker([
      "run", "--detach", "--name", container,
      "--memory", "256m", "--pids-limit", "256",
      "--publish", "127.0.0.1::22",
      "--volume", `${socket}:/var/run/docker.sock`,
      "--env", `AUTHORIZED_KEY=${clientKey}`,
      image,
    ]);
    const published = (await docker(["port", container, "22/tcp"])).stdout.trim().split("\n")[0] ?? "";
    const port = Number(published.slice(published.lastIndexOf(":") + 1));
    if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot read the SSH server's published port from \`docker port\`: ${published}`);

    // The published port accepts connections before sshd listens (the engine's proxy does): wait
    // for sshd's own word, which comes after the host key exists.
    await waitFor(
      async () => {
        const logs = await docker(["logs", container], { allowFailure: true });
        if (/Server listening on/.test(logs.stderr + logs.stdout)) return true;
        if (!(await inspectContainer(container)).State.Running) {
          throw new SshdExited(`SSH server container ${container} exited:\n${logs.stdout}${logs.stderr}`);
        }
        return undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `sshd in ${container} to listen`, fatal: (error) => error instanceof SshdExited },
    );

    const hostKey = keyOf((await docker(["exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub"])).stdout);
    const host = "127.0.0.1" as const;
    const knownHostsLine = `[${host}]:${port} ${hostKey}`;
    const knownHostsFile = join(dir, "known_hosts");
    writeFileSync(knownHostsFile, `${knownHostsLine}\n`, { mode: 0o600 });
    const sshOpts = [
      "-o", `UserKnownHostsFile=${knownHostsFile}`,
      "-o", "GlobalKnownHostsFile=/dev/null",
      "-o", "StrictHostKeyChecking=yes",
      "-o", "UpdateHostKeys=no",
      "-o", `IdentityFile=${identityFile}`,
      "-o", "IdentitiesOnly=yes",
      "-o", "BatchMode=yes",
      "-o", "ConnectTimeout=10",
    ];

    const sshBin = join(dir, "bin");
    const realSsh = (await run("sh", ["-c", "command -v ssh"])).stdout.trim();
    if (realSsh === "") throw new Error("no ssh client on PATH");
    // A directory of its own, so that PATH gains `ssh` and nothing else.
    mkdirSync(sshBin, { mode: 0o700 });
    writeFileSync(join(sshBin, "ssh"), `#!/bin/sh\nexec ${shellQuote(realSsh)} ${sshOpts.map(shellQuote).join(" ")} "$@"\n`, { mode: 0o700 });

    const login = await run("ssh", [...sshOpts, "-p", String(port), `deploy@${host}`, "true"]);
    if (login.code !== 0) throw new Error(`ssh deploy@${host} -p ${port} failed (exit ${login.code}): ${login.stderr.trim()}`);

    let wrongCount = 0;
    return {
      host,
      port,
      user: "deploy",
      dockerHost: `ssh://deploy@${host}:${port}`,
      identityFile,
      knownHostsFile,
      knownHostsLine,
      sshOpts,
      container,
      dockerCliEnv: () => ({ DOCKER_HOST: `ssh://deploy@${host}:${port}`, PATH: `${sshBin}${delimiter}${process.env.PATH ?? ""}` }),
      async wrongKnownHosts() {
        wrongCount += 1;
        const other = keyOf(await newKeyPair(join(dir, `wrong-host-key-${wrongCount}`), "not the server's"));
        if (other === hostKey) throw new Error("ssh-keygen made the server's own key again");
        const file = join(dir, `wrong_known_hosts_${wrongCount}`);
        writeFileSync(file, `[${host}]:${port} ${other}\n`, { mode: 0o600 });
        return file;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

class SshdExited extends Error {}
