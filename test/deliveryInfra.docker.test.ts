/**
 * The parts that delivery to a real server is tested against really work: a registry that takes
 * pushes only with its credentials over TLS and answers for digests by its HTTP API, and an `sshd`
 * through which the Docker CLI drives this machine's engine, trusting only the pinned host key.
 * Needs the Docker engine and the local registry and sshd images (scripts/build-registry-image.sh,
 * scripts/build-sshd-image.sh); fails without them.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docker, dockerHostAddress, inspectContainer, removeImages, requireDockerEngine, uniqueName } from "../support/docker";
import { DOCKER_CERTS_DIR, startRegistry, type Registry } from "../support/registry";
import { LOCAL_SSHD_IMAGE, run, startSshd, type Sshd } from "../support/sshd";

const scratch = mkdtempSync(join(tmpdir(), "delivery-infra-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A fresh, empty Docker CLI config: logins made here never touch this machine's own. */
function dockerConfigDir(): string {
  return mkdtempSync(join(scratch, "docker-config-"));
}

function login(registry: Registry, config: string, password = registry.password) {
  return docker(["login", "--username", registry.username, "--password-stdin", registry.server], {
    env: { DOCKER_CONFIG: config },
    input: password,
    allowFailure: true,
  });
}

/** A one-file image with content of its own (so no registry or engine has its layer yet). */
async function importSmallImage(ref: string): Promise<string> {
  const dir = mkdtempSync(join(scratch, "image-"));
  writeFileSync(join(dir, "hello.txt"), `${uniqueName("content")}\n`);
  await new Promise<void>((resolve, reject) =>
    execFile("tar", ["-C", dir, "-cf", join(dir, "image.tar"), "hello.txt"], (error) => (error ? reject(error) : resolve())),
  );
  const { stdout } = await docker(["import", join(dir, "image.tar"), ref]);
  return stdout.trim();
}

/** Pushes a fresh small image as `<server>/<repository>:v1`; returns its image id and pushed digest. */
async function pushSmallImage(registry: Registry, config: string, repository: string): Promise<{ id: string; digest: string; ref: string }> {
  const ref = `${registry.server}/${repository}:v1`;
  const id = await importSmallImage(ref);
  await docker(["push", ref], { env: { DOCKER_CONFIG: config } });
  const repoDigests = JSON.parse((await docker(["image", "inspect", "--format", "{{json .RepoDigests}}", ref])).stdout) as string[];
  const pushed = repoDigests.find((entry) => entry.startsWith(`${registry.server}/${repository}@`));
  if (pushed === undefined) throw new Error(`no repo digest for ${ref} after the push: ${repoDigests.join(", ")}`);
  return { id, digest: pushed.slice(pushed.indexOf("@") + 1), ref };
}

describe("the throwaway registry", () => {
  let registry: Registry;
  let config: string;
  const images: string[] = [];

  beforeAll(async () => {
    await requireDockerEngine();
    registry = await startRegistry();
    config = dockerConfigDir();
    const loggedIn = await login(registry, config);
    if (loggedIn.code !== 0) throw new Error(`docker login ${registry.server} failed: ${loggedIn.stderr}`);
  });

  afterAll(async () => {
    await removeImages(...images);
    await registry?.stop();
  });

  it("runs as a non-root user with a read-only root and its storage on a tmpfs", async () => {
    const state = await inspectContainer(registry.container);
    expect(state.Config.User).toBe("10001:10001");
    expect(state.HostConfig.ReadonlyRootfs).toBe(true);
    expect(state.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(Object.keys(state.HostConfig.Tmpfs ?? {})).toEqual(["/var/lib/docker-registry"]);
    expect(registry.server).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it("takes a push after docker login, serves it back by digest, and reports the pushed digest", async () => {
    const repository = uniqueName("infra/push");
    const pushed = await pushSmallImage(registry, config, repository);
    images.push(pushed.id);
    expect(pushed.digest).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(await registry.manifestDigest(repository, "v1")).toBe(pushed.digest);
    expect(await registry.manifestDigest(repository, pushed.digest)).toBe(pushed.digest);

    // Gone from the engine, the image can only come back from the registry.
    await docker(["image", "rm", "--force", pushed.id]);
    const byDigest = `${registry.server}/${repository}@${pushed.digest}`;
    await docker(["pull", byDigest], { env: { DOCKER_CONFIG: config } });
    expect((await docker(["image", "inspect", "--format", "{{.Id}}", byDigest])).stdout.trim()).toBe(pushed.id);
  });

  it("refuses a wrong password", async () => {
    const elsewhere = dockerConfigDir();
    const refused = await login(registry, elsewhere, `${registry.password}x`);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/401 Unauthorized/);
  });

  it("refuses a pull without credentials", async () => {
    const repository = uniqueName("infra/private");
    const pushed = await pushSmallImage(registry, config, repository);
    images.push(pushed.id);
    await docker(["image", "rm", "--force", pushed.id]);
    const pull = await docker(["pull", `${registry.server}/${repository}@${pushed.digest}`], {
      env: { DOCKER_CONFIG: dockerConfigDir() },
      allowFailure: true,
    });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toMatch(/no basic auth credentials/);
    expect((await docker(["image", "inspect", pushed.id], { allowFailure: true })).code).not.toBe(0);
  });

  it("reports a deleted manifest as gone, by digest and by tag", async () => {
    const repository = uniqueName("infra/deleted");
    const pushed = await pushSmallImage(registry, config, repository);
    images.push(pushed.id);
    await registry.deleteManifest(repository, pushed.digest);
    expect(await registry.manifestDigest(repository, pushed.digest)).toBeUndefined();
    expect(await registry.manifestDigest(repository, "v1")).toBeUndefined();
    const pull = await docker(["pull", `${registry.server}/${repository}@${pushed.digest}`], {
      env: { DOCKER_CONFIG: config },
      allowFailure: true,
    });
    expect(pull.code).not.toBe(0);
    expect(pull.stderr).toMatch(/manifest unknown/);
  });
});

// On loopback the engine never checks the certificate (127.0.0.0/8 is one of its default insecure
// registries); on the bridge address it must, so this is where the throwaway CA is put to the test.
describe("the engine's trust of the registry's throwaway CA", () => {
  let registry: Registry;

  beforeAll(async () => {
    await requireDockerEngine();
    registry = await startRegistry({ address: await dockerHostAddress() });
  });

  afterAll(async () => {
    await registry?.stop();
  });

  it("takes a login only while the CA is in certs.d, and stops trusting it after stop()", async () => {
    const caInCertsDir = join(DOCKER_CERTS_DIR, registry.server, "ca.crt");
    expect((await login(registry, dockerConfigDir())).code).toBe(0);

    const aside = `${caInCertsDir}.aside`;
    renameSync(caInCertsDir, aside);
    try {
      const untrusted = await login(registry, dockerConfigDir());
      expect(untrusted.code).not.toBe(0);
      expect(untrusted.stderr).toMatch(/x509: certificate signed by unknown authority/);
    } finally {
      renameSync(aside, caInCertsDir);
    }

    const server = registry.server;
    await registry.stop();
    expect(existsSync(join(DOCKER_CERTS_DIR, server))).toBe(false);
  });
});

describe("the throwaway sshd", () => {
  let sshd: Sshd;
  let engineVersion: string;

  beforeAll(async () => {
    await requireDockerEngine();
    engineVersion = (await docker(["version", "--format", "{{.Server.Version}}"])).stdout.trim();
    sshd = await startSshd();
  });

  afterAll(async () => {
    await sshd?.stop();
  });

  /** `ssh` as the helper's options say, with some of them replaced or dropped. */
  function ssh(command: string, replace: Record<string, string | undefined> = {}) {
    const opts: string[] = [];
    for (let i = 0; i < sshd.sshOpts.length; i += 2) {
      const [key = ""] = (sshd.sshOpts[i + 1] ?? "").split("=");
      if (!(key in replace)) opts.push("-o", sshd.sshOpts[i + 1] ?? "");
    }
    for (const [key, value] of Object.entries(replace)) if (value !== undefined) opts.push("-o", `${key}=${value}`);
    return run("ssh", [...opts, "-p", String(sshd.port), `${sshd.user}@${sshd.host}`, command]);
  }

  it("pins the container's own host key", () => {
    expect(sshd.knownHostsLine).toMatch(new RegExp(`^\\[127\\.0\\.0\\.1\\]:${sshd.port} ssh-ed25519 [A-Za-z0-9+/=]+$`));
    expect(sshd.dockerHost).toBe(`ssh://deploy@127.0.0.1:${sshd.port}`);
    expect(sshd.sshOpts).toEqual(expect.arrayContaining(["StrictHostKeyChecking=yes", "BatchMode=yes", `IdentityFile=${sshd.identityFile}`]));
  });

  it("lets deploy run docker against this machine's engine over ssh", async () => {
    const answer = await ssh("docker version --format '{{.Server.Version}}'");
    expect(answer.stderr).toBe("");
    expect(answer.stdout.trim()).toBe(engineVersion);
  });

  it("serves the docker CLI's ssh:// host (docker system dial-stdio)", async () => {
    const version = await docker(["-H", sshd.dockerHost, "version", "--format", "{{.Server.Version}}"], { env: sshd.dockerCliEnv() });
    expect(version.stdout.trim()).toBe(engineVersion);
    // The engine behind the server is this one: it knows the server's own container.
    const seen = await docker(["container", "inspect", "--format", "{{.Name}}", sshd.container], { env: sshd.dockerCliEnv() });
    expect(seen.stdout.trim()).toBe(`/${sshd.container}`);
  });

  it("is refused with a known_hosts line for another key", async () => {
    const refused = await ssh("true", { UserKnownHostsFile: await sshd.wrongKnownHosts() });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/REMOTE HOST IDENTIFICATION HAS CHANGED[\s\S]*Host key verification failed/);
  });

  it("is refused in batch mode without any known_hosts entry", async () => {
    const empty = join(scratch, "empty_known_hosts");
    writeFileSync(empty, "");
    const refused = await ssh("true", { UserKnownHostsFile: empty, StrictHostKeyChecking: undefined });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/Host key verification failed/);
  });

  it("takes public keys only: no password, no root, no host key baked into the image", async () => {
    const noKey = await ssh("true", { PubkeyAuthentication: "no", PreferredAuthentications: "password,keyboard-interactive" });
    expect(noKey.code).toBe(255);
    expect(noKey.stderr).toMatch(/Permission denied \(publickey\)/);

    const effective = (await docker(["exec", sshd.container, "sshd", "-T"])).stdout;
    for (const line of ["passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no", "authenticationmethods publickey", "allowusers deploy"]) {
      expect(effective.split("\n")).toContain(line);
    }
    const baked = await docker(["run", "--rm", "--name", uniqueName("sshd-image"), "--network", "none", "--entrypoint", "sh", LOCAL_SSHD_IMAGE, "-c", "ls /etc/ssh/ssh_host_* 2>/dev/null | wc -l"]);
    expect(baked.stdout.trim()).toBe("0");
  });
});
