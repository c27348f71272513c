/**
 * The program's own engine calls to a server over `ssh://` and to a registry, for real: dockerode
 * through the system's ssh to a throwaway `sshd` (the API, a command run inside a container, a file
 * written into one), each way the connection is refused explained, and the start-of-program checks
 * against a throwaway registry with authentication and TLS from a CA the engine trusts. Needs the
 * Docker engine and the local sshd, registry and base images; fails without them.
 */
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { dockerClient, execIn, putFile } from "../components/docker/client";
import { checkEngine, checkRegistryLogin, checkRegistryPull } from "../components/docker/preflight";
import { pulledImageProvider, type PulledImageInputs } from "../components/hostImage";
import { REPO_ROOT, runBash } from "../support/bash";
import { LOCAL_PYTHON_BASE, docker, dockerHostAddress, removeContainers, removeImages, requireDockerEngine, uniqueName } from "../support/docker";
import { startRegistry, type Registry } from "../support/registry";
import { LOCAL_SSHD_IMAGE, startSshd, type Sshd } from "../support/sshd";

let sshd: Sshd;
let registry: Registry;
const scratch = mkdtempSync(join(tmpdir(), "remote-engine-"));
const containers: string[] = [];
const images: string[] = [];

/** The sshd's options with another known_hosts file in place of the pinned one. */
function withKnownHosts(file: string): string[] {
  return sshd.sshOpts.map((opt) => (opt.startsWith("UserKnownHostsFile=") ? `UserKnownHostsFile=${file}` : opt));
}

/** The message a promise rejects with; fails the test when it resolves. */
async function refusal(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error, "expected a refusal").toBeInstanceOf(Error);
  return (error as Error).message;
}

beforeAll(async () => {
  await requireDockerEngine(LOCAL_SSHD_IMAGE);
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  sshd = await startSshd();
  // On the bridge address, where the engine checks the registry's certificate against certs.d.
  registry = await startRegistry({ address: await dockerHostAddress() });
}, 120_000);

afterAll(async () => {
  await removeContainers(...containers);
  await removeImages(...images);
  await sshd?.stop();
  await registry?.stop();
  rmSync(scratch, { recursive: true, force: true });
});

describe("dockerode over ssh://, through the system's ssh", () => {
  it("reaches the engine, runs a command inside a container and writes a file into it", async () => {
    const engine = dockerClient(sshd.dockerHost, sshd.sshOpts);
    expect(String(await engine.ping())).toBe("OK");
    const name = uniqueName("over-ssh");
    containers.push(name);
    // Read-only, with a volume where the file goes: how the front proxy keeps its configuration.
    await docker(["run", "-d", "--name", name, "--read-only", "--mount", "type=volume,dst=/work", LOCAL_PYTHON_BASE, "sleep", "300"]);
    await putFile(engine, name, "/work", "note.txt", "written through ssh\n");
    const result = await execIn(engine, name, ["cat", "/work/note.txt"], 20_000);
    expect(result).toEqual({ exitCode: 0, stdout: "written through ssh\n", stderr: "" });
    // Many calls in a row: every one is its own ssh connection, and none is left open.
    const answers = await Promise.all(Array.from({ length: 5 }, () => engine.getContainer(name).inspect()));
    expect(new Set(answers.map((a) => a.Name))).toEqual(new Set([`/${name}`]));
  });

  it("passes the start-of-program check with the pinned key", async () => {
    await expect(checkEngine({ host: sshd.dockerHost, sshOpts: sshd.sshOpts }, "staging")).resolves.toBeUndefined();
  });

  it("refuses a server whose host key is not pinned, and says how to pin it", async () => {
    const empty = join(scratch, "empty_known_hosts");
    writeFileSync(empty, "", { mode: 0o600 });
    const message = await refusal(checkEngine({ host: sshd.dockerHost, sshOpts: withKnownHosts(empty) }, "staging"));
    expect(message).toContain("stack staging cannot reach its Docker engine (1 problem); nothing was changed:");
    expect(message).toContain(`Docker host ${sshd.dockerHost}: the server's host key is not pinned in known_hosts, so the connection was refused`);
    expect(message).toContain(`ssh-keyscan -p ${sshd.port} 127.0.0.1`);
    expect(message).toContain("→ at [\"docker:host\"]");
  });

  it("refuses a server whose host key changed, and says not to trust it blindly", async () => {
    const wrong = await sshd.wrongKnownHosts();
    const message = await refusal(checkEngine({ host: sshd.dockerHost, sshOpts: withKnownHosts(wrong) }, "prod"));
    expect(message).toContain("the server's host key does not match the one pinned in known_hosts");
    expect(message).toContain("nothing was sent");
  });

  it("keeps refusing an unknown key even when the stack's flags ask ssh to accept it", async () => {
    const empty = join(scratch, "empty_known_hosts_2");
    writeFileSync(empty, "", { mode: 0o600 });
    const opts = ["-o", "StrictHostKeyChecking=accept-new", ...withKnownHosts(empty)];
    const message = await refusal(dockerClient(sshd.dockerHost, opts).ping());
    expect(message).toContain("host key is not pinned in known_hosts");
  });

  it("refuses a user without the server's key", async () => {
    const keyless = sshd.sshOpts.map((opt) => (opt.startsWith("IdentityFile=") ? `IdentityFile=${join(scratch, "no-such-key")}` : opt));
    const message = await refusal(dockerClient(sshd.dockerHost, keyless).ping());
    expect(message).toContain(`Docker host ${sshd.dockerHost}: the server refused the SSH key of deploy`);
    expect(message).toContain("authorized_keys");
  });

  it("says when nothing listens at the address", async () => {
    const message = await refusal(dockerClient("ssh://deploy@127.0.0.1:1", sshd.sshOpts).ping());
    expect(message).toContain("no SSH connection to 127.0.0.1 port 1");
  });
});

describe("one shared SSH connection, as the workflows set it up", () => {
  it("serves many engine calls, and the workflows' last step closes it with the key", async () => {
    // A runner's home, and the sharing options scripts/ci/ssh-target.sh writes to its ~/.ssh/config.
    const home = mkdtempSync(join(scratch, "home-"));
    mkdirSync(join(home, ".ssh"), { mode: 0o700 });
    const opts = [...sshd.sshOpts, "-o", "ControlMaster=auto", "-o", `ControlPath=${home}/.ssh/cm-%C`, "-o", "ControlPersist=60"];
    const engine = dockerClient(sshd.dockerHost, opts);
    expect(String(await engine.ping())).toBe("OK");
    const infos = await Promise.all(Array.from({ length: 5 }, () => engine.info()));
    expect(infos.map((i) => typeof i.ID)).toEqual(Array(5).fill("string"));
    const sockets = () => readdirSync(join(home, ".ssh")).filter((f) => f.startsWith("cm-"));
    expect(sockets()).toHaveLength(1);
    const socket = join(home, ".ssh", sockets()[0]!);
    expect(statSync(socket).isSocket()).toBe(true);
    const check = () => runBash(`ssh -o ControlPath="${socket}" -O check server`, { env: { HOME: home } }).code;
    expect(check()).toBe(0);

    const steps = (parseYaml(readFileSync(join(REPO_ROOT, ".github", "workflows", "deploy.yml"), "utf8")) as { jobs: Record<string, { steps: { name?: string; run?: string }[] }> }).jobs.staging!.steps;
    const remove = steps.find((step) => step.name === "Remove the SSH key")!;
    for (const file of ["id_ed25519", "known_hosts", "config"]) writeFileSync(join(home, ".ssh", file), "x", { mode: 0o600 });
    expect(runBash(remove.run!, { env: { HOME: home } })).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(readdirSync(join(home, ".ssh"))).toEqual([]);
    expect(check()).not.toBe(0);
  });
});

describe("the registry checks", () => {
  let repository: string;
  let digest: string;

  beforeAll(async () => {
    // A pushed image, as staging's build leaves it.
    const config = mkdtempSync(join(scratch, "docker-config-"));
    await docker(["login", "--username", registry.username, "--password-stdin", registry.server], { env: { DOCKER_CONFIG: config }, input: registry.password });
    repository = uniqueName("checks/backend");
    const ref = `${registry.server}/${repository}:v1`;
    await docker(["tag", LOCAL_PYTHON_BASE, ref]);
    images.push(ref);
    await docker(["push", ref], { env: { DOCKER_CONFIG: config } });
    digest = (await registry.manifestDigest(repository, "v1"))!;
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  }, 120_000);

  const login = (password = registry.password) => ({ server: registry.server, username: registry.username, password });

  it("accept the right credentials, for the login and for the digest, over ssh:// too", async () => {
    await expect(checkRegistryLogin({}, login(), "staging")).resolves.toBeUndefined();
    await expect(checkRegistryPull({}, `${registry.server}/${repository}@${digest}`, login(), "prod")).resolves.toBeUndefined();
    await expect(
      checkRegistryPull({ host: sshd.dockerHost, sshOpts: sshd.sshOpts }, `${registry.server}/${repository}@${digest}`, login(), "prod"),
    ).resolves.toBeUndefined();
  });

  it("refuse a wrong password before the build, naming the registry and the key to fix, never the password", async () => {
    const wrong = `${registry.password}-wrong`;
    const message = await refusal(checkRegistryLogin({}, login(wrong), "staging"));
    expect(message).toContain("stack staging was not deployed (1 problem); nothing was built or changed:");
    expect(message).toContain(`registry ${registry.server} refused user ${registry.username} with this password`);
    expect(message).toContain("→ at registryPassword");
    expect(message).toContain("fix: pulumi config set --stack staging --secret registryPassword");
    expect(message).not.toContain(wrong);
    expect(message).not.toContain(registry.password);
  });

  it("refuse prod's wrong password before anything of prod, over ssh:// as locally", async () => {
    const wrong = `${registry.password}-prod`;
    for (const endpoint of [{}, { host: sshd.dockerHost, sshOpts: sshd.sshOpts }]) {
      const message = await refusal(checkRegistryPull(endpoint, `${registry.server}/${repository}@${digest}`, login(wrong), "prod"));
      expect(message).toContain("stack prod was not deployed (1 problem); nothing of it changed:");
      expect(message).toContain(`registry ${registry.server} refused user ${registry.username} with this password`);
      expect(message).toContain("fix: pulumi config set --stack prod --secret registryPassword");
      expect(message).not.toContain(wrong);
    }
  });

  it("refuse a digest that is gone from the registry, saying what to do", async () => {
    const gone = uniqueName("checks/gone");
    const ref = `${registry.server}/${gone}:v1`;
    const config = mkdtempSync(join(scratch, "docker-config-"));
    await docker(["login", "--username", registry.username, "--password-stdin", registry.server], { env: { DOCKER_CONFIG: config }, input: registry.password });
    await docker(["tag", LOCAL_PYTHON_BASE, ref]);
    images.push(ref);
    await docker(["push", ref], { env: { DOCKER_CONFIG: config } });
    const goneDigest = (await registry.manifestDigest(gone, "v1"))!;
    await registry.deleteManifest(gone, goneDigest);
    const message = await refusal(checkRegistryPull({}, `${registry.server}/${gone}@${goneDigest}`, login(), "prod"));
    expect(message).toContain(`${registry.server}/${gone}@${goneDigest} is not in registry ${registry.server} any more`);
    expect(message).toContain("fix: deploy staging again");
  });

  it("the pull: by digest onto the server over ssh://, a new password no change, a wrong one named without its value", async () => {
    // An image of its own (not a tag of the base, which the engine keeps), pushed, then removed from
    // the engine: an image the engine still holds is not fetched again, so it would prove no pull.
    const context = mkdtempSync(join(scratch, "build-"));
    writeFileSync(join(context, "Dockerfile"), `FROM ${LOCAL_PYTHON_BASE}\nCOPY release.txt /release.txt\n`);
    writeFileSync(join(context, "release.txt"), `${uniqueName("release")}\n`);
    const own = uniqueName("pull/backend");
    const tag = `${registry.server}/${own}:v1`;
    await docker(["build", "--quiet", "--tag", tag, context]);
    const config = mkdtempSync(join(scratch, "docker-config-"));
    await docker(["login", "--username", registry.username, "--password-stdin", registry.server], { env: { DOCKER_CONFIG: config }, input: registry.password });
    await docker(["push", tag], { env: { DOCKER_CONFIG: config } });
    const ref = `${registry.server}/${own}@${(await registry.manifestDigest(own, "v1"))!}`;
    images.push(ref);
    await docker(["image", "rm", tag]);
    await expect(docker(["image", "inspect", ref])).rejects.toThrow();
    const inputs: PulledImageInputs = {
      imageRef: ref,
      server: registry.server,
      username: registry.username,
      password: registry.password,
      dockerHost: sshd.dockerHost,
      dockerSshOpts: sshd.sshOpts,
    };
    const created = await pulledImageProvider.create!(inputs);
    const outs = created.outs!;
    const local = JSON.parse((await docker(["image", "inspect", ref])).stdout) as { Id: string; RepoDigests: string[] }[];
    expect(outs.imageId).toBe(local[0]!.Id);
    expect(local[0]!.RepoDigests).toContain(ref);
    expect(await pulledImageProvider.diff!(created.id, outs, { ...inputs, password: "next-run-token" })).toEqual({ changes: false, replaces: [], deleteBeforeReplace: false });
    expect(await pulledImageProvider.diff!(created.id, outs, { ...inputs, imageRef: `${registry.server}/${repository}@sha256:${"0".repeat(64)}` })).toMatchObject({ changes: true, replaces: ["imageRef"] });
    expect(await pulledImageProvider.read!(created.id, outs)).toEqual({ id: created.id, props: created.outs });

    await docker(["image", "rm", "--force", ref]);
    const wrong = `${registry.password}-wrong`;
    const message = await refusal(pulledImageProvider.create!({ ...inputs, password: wrong }));
    expect(message).toContain(`pulling ${ref} from ${registry.server} as ${registry.username} failed:`);
    expect(message).not.toContain(wrong);
    // Gone from the host: a refresh drops it, so the next update pulls again.
    expect(await pulledImageProvider.read!(created.id, outs)).toEqual({});
  });

  it("are RunErrors: the engine prints them without a stack trace", async () => {
    const error = await checkRegistryLogin({}, login("nope"), "staging").then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(pulumi.RunError.isInstance(error)).toBe(true);
  });
});
