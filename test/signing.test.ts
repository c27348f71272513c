/**
 * `npm run signing -- init`: the real script as a subprocess, with the real cosign (it makes the key
 * pair) and a stand-in `pulumi` that records argv, environment and stdin of every call. The private
 * key and its password reach pulumi on stdin only, as staging's secrets; the public key goes to
 * prod's config; the key pair is real (the stored key opens with the stored password and matches
 * the public key); nothing printed holds a key or the password; a key already set is kept unless
 * `--force`.
 */
import { execFile, execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { publicKeyFingerprint } from "../components/supplyChain/keys";
import { type FakePulumi, type FakeScenario, createFakePulumi, makeProjectDir, runScript } from "../support/fakePulumi";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

const COSIGN_DIR = path.dirname(execFileSync("bash", ["-c", "command -v cosign || true"], { encoding: "utf8" }).trim() || "/nonexistent/cosign");

function setup(scenario: FakeScenario = {}): { fake: FakePulumi; dir: string; run: (args: string[]) => ReturnType<typeof runScript> } {
  const fake = createFakePulumi({ stacks: { staging: { environment: { value: "staging", secret: false } }, prod: { environment: { value: "prod", secret: false } } }, ...scenario });
  const dir = makeProjectDir();
  fs.mkdirSync(path.join(dir, ".pulumi-state", ".pulumi"), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, ".pulumi-state", "passphrase"), "local-passphrase", { mode: 0o600 });
  cleanups.push(() => fake.cleanup(), () => fs.rmSync(dir, { recursive: true, force: true }));
  const searchPath = [fake.binDir, COSIGN_DIR, path.dirname(process.execPath), "/usr/bin", "/bin"].join(":");
  return { fake, dir, run: (args) => runScript("signing", ["init", ...args], { fake, projectDir: dir, path: searchPath }) };
}

/** The public key cosign derives from a stored private key and password. */
function publicKeyOf(privateKey: string, password: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile("cosign", ["public-key", "--key", "env://K"], { env: { PATH: `${COSIGN_DIR}:/usr/bin:/bin`, K: privateKey, COSIGN_PASSWORD: password } }, (error, stdout, stderr) =>
      error ? reject(new Error(stderr)) : resolve(stdout.trim()),
    ),
  );
}

describe("npm run signing -- init", () => {
  it("stores a real key pair where it belongs, the secrets on stdin only, and prints only the fingerprint", async () => {
    const { fake, run } = setup();
    const res = await run([]);
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const sets = fake.calls().filter((c) => c.argv.slice(0, 2).join(" ") === "config set");
    expect(sets.map((c) => c.argv.join(" "))).toEqual([
      "config set --secret --path cosignPrivateKey --stack staging --non-interactive",
      "config set --secret --path cosignPassword --stack staging --non-interactive",
      "config set --path promotion.signing.publicKey --stack prod --non-interactive",
    ]);
    const [key, password, publicKey] = sets.map((c) => c.stdin);
    expect(key).toMatch(/^-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n[\s\S]+\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n$/);
    expect(password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(publicKey).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----$/);
    // A real pair: the stored key opens with the stored password and is the public key's other half.
    expect(await publicKeyOf(key!, password!)).toBe(publicKey);
    const stacks = fake.stacks();
    expect(stacks.staging?.cosignPrivateKey?.secret).toBe(true);
    expect(stacks.staging?.cosignPassword?.secret).toBe(true);
    expect(stacks.prod?.["promotion.signing.publicKey"]).toEqual({ value: publicKey, secret: false });
    expect(res.stdout).toContain(`public key fingerprint ${publicKeyFingerprint(publicKey!)}`);
    expect(res.stdout).toContain("Stored cosignPrivateKey and cosignPassword in stack staging, encrypted");
    for (const call of fake.calls()) {
      for (const secret of [key!, password!, ...key!.split("\n").filter((l) => l.length > 20)]) expect(call.argv.join(" ")).not.toContain(secret);
    }
    for (const secret of [password!, ...key!.split("\n").filter((l) => l.length > 20)]) expect(res.stdout).not.toContain(secret);
    // The private folder the pair was made in is gone.
    expect(fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith("backend-delivery-keys-"))).toEqual([]);
  });

  it("keeps a key already set (exit 3, nothing stored) unless --force", async () => {
    const { fake, run } = setup({ stacks: { staging: { cosignPrivateKey: { value: "old", secret: true } }, prod: {} } });
    const kept = await run([]);
    expect(kept.code).toBe(3);
    expect(kept.stderr).toContain("cosignPrivateKey of staging is already set; nothing was changed. To replace the key pair, run again with --force");
    expect(fake.calls().filter((c) => c.argv[1] === "set")).toEqual([]);
    const replaced = await run(["--force"]);
    expect(replaced.code).toBe(0);
    expect(fake.stacks().staging?.cosignPrivateKey?.value).not.toBe("old");
  });

  it("names other stacks, and refuses one that does not exist (exit 3)", async () => {
    const { fake, run } = setup({ stacks: { "staging-eu": {}, "prod-eu": {} } });
    expect((await run(["--staging", "staging-eu", "--prod", "prod-eu"])).code).toBe(0);
    expect(Object.keys(fake.stacks()["prod-eu"] ?? {})).toEqual(["promotion.signing.publicKey"]);
    const missing = await run(["--staging", "nope"]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain("Stack nope does not exist in this backend; nothing was stored");
  });

  it("refuses a bad command line with the usage (exit 2)", async () => {
    const { run, dir } = setup();
    const res = await runScript("signing", ["make"], { projectDir: dir });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("usage: npm run signing -- init");
    expect((await run(["--frobnicate"])).code).toBe(2);
  });
});
