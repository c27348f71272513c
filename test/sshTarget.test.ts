/**
 * scripts/ci/ssh-target.sh, which every SSH job of the workflows runs after writing its key and host
 * keys: the real script, the real ssh-keygen, a stand-in `pulumi` holding the stacks' config.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type BashResult, makeSshKey, runBash } from "../support/bash";
import { type FakeConfigValue, type FakePulumi, createFakePulumi } from "../support/fakePulumi";

const plain = (value: string): FakeConfigValue => ({ value, secret: false });
const SERVER = "staging.example.com";

let key: ReturnType<typeof makeSshKey>;
let hostKey: ReturnType<typeof makeSshKey>;
beforeAll(() => {
  key = makeSshKey();
  hostKey = makeSshKey();
});
afterAll(() => {
  key.cleanup();
  hostKey.cleanup();
});

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

interface Setup {
  /** The stack's config as `pulumi config get` answers it (`docker:host`, `image.registry.server`). */
  config?: Record<string, string>;
  privateKey?: string;
  knownHosts?: string;
  stacks?: string[];
}

/** A scratch HOME with ~/.ssh written as the workflows' install step writes it, then the script. */
function run(setup: Setup = {}): BashResult & { home: string; fake: FakePulumi } {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "bd-ssh-target-"));
  const config = setup.config ?? { "docker:host": `ssh://deploy@${SERVER}`, "image.registry.server": "ghcr.io" };
  const fake = createFakePulumi({ stacks: { staging: Object.fromEntries(Object.entries(config).map(([k, v]) => [k, plain(v)])) } });
  cleanups.push(() => fs.rmSync(home, { recursive: true, force: true }), fake.cleanup);
  fs.mkdirSync(path.join(home, ".ssh"), { mode: 0o700 });
  const write = (name: string, content: string) => fs.writeFileSync(path.join(home, ".ssh", name), `${content}\n`, { mode: 0o600 });
  write("id_ed25519", setup.privateKey ?? key.privateKey);
  write("known_hosts", setup.knownHosts ?? `${SERVER} ${hostKey.publicKey}`);
  const r = runBash(`bash scripts/ci/ssh-target.sh ${(setup.stacks ?? ["staging"]).join(" ")}`, {
    env: { HOME: home, PULUMI_CONFIG_PASSPHRASE: "p", ...fake.env },
    binDirs: [fake.binDir],
  });
  return { ...r, home, fake };
}

describe("scripts/ci/ssh-target.sh", () => {
  it("pins OpenSSH to the key and the pinned host keys, strictly and without prompts", () => {
    const r = run();
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const config = path.join(r.home, ".ssh", "config");
    expect(fs.statSync(config).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(config, "utf8").split("\n").map((l) => l.trim())).toEqual([
      "Host *",
      "IdentityFile ~/.ssh/id_ed25519",
      "IdentitiesOnly yes",
      "UserKnownHostsFile ~/.ssh/known_hosts",
      "GlobalKnownHostsFile /dev/null",
      "StrictHostKeyChecking yes",
      "UpdateHostKeys no",
      "BatchMode yes",
      "ControlMaster auto",
      "ControlPath ~/.ssh/cm-%C",
      "ControlPersist 60",
      "",
    ]);
    // What OpenSSH itself makes of it for the server. (OpenSSH finds ~/.ssh through the user's
    // passwd entry, not HOME, hence -F here; on a runner both are the same folder.)
    const g = runBash(`ssh -F "${config}" -G deploy@${SERVER}`, { env: { HOME: r.home } });
    expect(g.code).toBe(0);
    const options = g.stdout.split("\n");
    for (const option of ["stricthostkeychecking true", "batchmode yes", "identitiesonly yes", "globalknownhostsfile /dev/null", "updatehostkeys false", "controlmaster auto", "controlpersist 60"]) {
      expect(options).toContain(option);
    }
    expect(options.filter((o) => o.startsWith("userknownhostsfile "))).toEqual([expect.stringMatching(/^userknownhostsfile \S+\/\.ssh\/known_hosts$/)]);
    expect(options.filter((o) => o.startsWith("identityfile "))).toEqual([expect.stringMatching(/^identityfile \S+\/\.ssh\/id_ed25519$/)]);
  });

  it("prints the pinned fingerprints and the target, never the private key", () => {
    const r = run();
    const fingerprint = runBash("ssh-keygen -l -f -", { env: { HOME: r.home }, stdin: hostKey.publicKey }).stdout.split(" ")[1]!;
    expect(r.stdout).toContain(fingerprint);
    expect(r.stdout).toContain(`stack staging: Docker host ssh://deploy@${SERVER} (host key pinned), registry ghcr.io`);
    const body = key.privateKey.split("\n")[1]!;
    expect(r.stdout + r.stderr).not.toContain(body);
  });

  it("only reads config: every pulumi call is `config get`", () => {
    const r = run();
    expect(r.fake.calls().map((c) => c.argv.slice(0, 2))).toEqual(Array(3).fill(["config", "get"]));
  });

  it.each([
    ["unset", undefined],
    ["the runner's socket", "unix:///var/run/docker.sock"],
    ["plain TCP", "tcp://10.0.0.5:2375"],
  ])("refuses a docker:host that is %s", (_label, host) => {
    const r = run({ config: { ...(host === undefined ? {} : { "docker:host": host }), "image.registry.server": "ghcr.io" } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`stack staging: docker:host is '${host ?? "unset"}', not ssh://USER@HOST`);
    expect(r.stderr).toContain("pulumi config set --stack staging docker:host ssh://deploy@<server>");
  });

  it("refuses a host whose key SSH_KNOWN_HOSTS does not pin, naming the ssh-keyscan line to add", () => {
    const r = run({ knownHosts: `other.example.com ${hostKey.publicKey}` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`SSH_KNOWN_HOSTS pins no host key for ${SERVER}`);
    expect(r.stderr).toContain(`ssh-keyscan -t ed25519 -p 22 ${SERVER}`);
  });

  it("looks a host on another port up as [host]:port, hashed lines included", () => {
    const hashedDir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-known-"));
    cleanups.push(() => fs.rmSync(hashedDir, { recursive: true, force: true }));
    const file = path.join(hashedDir, "known_hosts");
    fs.writeFileSync(file, `[${SERVER}]:2222 ${hostKey.publicKey}\n`);
    expect(runBash(`ssh-keygen -q -H -f "${file}"`, { env: { HOME: hashedDir } }).code).toBe(0);
    const hashed = fs.readFileSync(file, "utf8").trim();
    expect(hashed.startsWith("|1|")).toBe(true);
    const ok = run({ knownHosts: hashed, config: { "docker:host": `ssh://deploy@${SERVER}:2222`, "image.registry.server": "ghcr.io" } });
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    const wrongPort = run({ knownHosts: hashed });
    expect(wrongPort.code).toBe(1);
  });

  it.each([
    ["an empty key", "", "SSH_PRIVATE_KEY is empty or unset"],
    ["a public key", "ssh-ed25519 AAAA", "SSH_PRIVATE_KEY is not an OpenSSH private key without a passphrase"],
  ])("refuses %s", (_label, privateKey, message) => {
    const r = run({ privateKey });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(message);
  });

  it("refuses a key with a passphrase instead of prompting for it", () => {
    const locked = makeSshKey("a passphrase");
    cleanups.push(locked.cleanup);
    const r = run({ privateKey: locked.privateKey });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("SSH_PRIVATE_KEY is not an OpenSSH private key without a passphrase");
  });

  it("refuses empty or malformed SSH_KNOWN_HOSTS", () => {
    expect(run({ knownHosts: "" }).stderr).toContain("SSH_KNOWN_HOSTS is empty or unset");
    const r = run({ knownHosts: `${SERVER} not-a-key` });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("SSH_KNOWN_HOSTS holds no known_hosts line");
  });

  it("refuses a stack without image.registry, with the commands that set it", () => {
    const r = run({ config: { "docker:host": `ssh://deploy@${SERVER}` } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("pulumi config set --stack staging --path image.registry.server ghcr.io");
    expect(r.stderr).toContain("pulumi config set --stack staging --path image.registry.username <owner>");
  });

  it("refuses key files that others can read", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "bd-ssh-mode-"));
    cleanups.push(() => fs.rmSync(home, { recursive: true, force: true }));
    fs.mkdirSync(path.join(home, ".ssh"));
    fs.writeFileSync(path.join(home, ".ssh", "id_ed25519"), key.privateKey, { mode: 0o644 });
    fs.writeFileSync(path.join(home, ".ssh", "known_hosts"), `${SERVER} ${hostKey.publicKey}\n`, { mode: 0o600 });
    const r = runBash("bash scripts/ci/ssh-target.sh staging", { env: { HOME: home } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${home}/.ssh/id_ed25519 has mode 644, not 600`);
  });

  it("needs at least one stack", () => {
    const r = runBash("bash scripts/ci/ssh-target.sh", { env: { HOME: os.tmpdir() } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("usage: bash scripts/ci/ssh-target.sh STACK...");
  });
});
