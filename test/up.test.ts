/**
 * `npm run up -- <stack>`: the pure rules, then the real script as a subprocess driving a stand-in
 * `pulumi` that records argv, environment and stdin of every call.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseUpArgs } from "../scripts/lib/cliArgs";
import { HOST_PORT_RANGE, chooseHostPort, claimedHostPorts } from "../scripts/lib/hostPort";
import { resolvePassphrase } from "../scripts/lib/session";
import { LOCAL_DATABASE_URL, localDefault, nameSaysProduction, prodRefusal, unsetProductionRole } from "../scripts/lib/stackSecrets";
import { type FakeCall, type FakePulumi, createFakePulumi, makeProjectDir, runScript } from "../support/fakePulumi";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

function setup(scenario: Parameters<typeof createFakePulumi>[0] = {}): { fake: FakePulumi; dir: string } {
  const fake = createFakePulumi(scenario);
  const dir = makeProjectDir();
  cleanups.push(() => fake.cleanup(), () => fs.rmSync(dir, { recursive: true, force: true }));
  return { fake, dir };
}

/** Each call as one readable command line (stdin not included). */
const commands = (calls: FakeCall[]) => calls.map((c) => c.argv.join(" "));

const CANARY_SECRET_KEY = "canary-secret-key-5b1f0c9e7d3a4f62a8e1c0b9d7f6e5a4";
// Assembled from parts: a literal connection string would (rightly) trip the repository's secret scan.
const CANARY_DATABASE_URL = ["postgresql://app", "canary-db-pass-93c1@db.internal:5432/app"].join(":");

describe("parseUpArgs", () => {
  it("takes the stack and passes what follows to pulumi up", () => {
    expect(parseUpArgs(["staging"])).toEqual({ ok: true, value: { stack: "staging", extra: [] } });
    expect(parseUpArgs(["staging", "--", "--yes", "--skip-preview"])).toEqual({
      ok: true,
      value: { stack: "staging", extra: ["--yes", "--skip-preview"] },
    });
    expect(parseUpArgs(["--", "org/backend-delivery/dev", "--yes"])).toEqual({
      ok: true,
      value: { stack: "org/backend-delivery/dev", extra: ["--yes"] },
    });
  });

  it("refuses a missing, option-like or malformed stack name with the usage", () => {
    for (const argv of [[], ["--yes"], ["bad name"], ["a/b/c/d"]]) {
      const r = parseUpArgs(argv);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toContain("Usage: npm run up -- <stack>");
    }
  });
});

describe("stack roles and local defaults", () => {
  it("tells a stack name that says production, which the quick start never gives a role by guess", () => {
    expect(nameSaysProduction("prod")).toBe(true);
    expect(nameSaysProduction("acme/backend-delivery/production")).toBe(true);
    expect(nameSaysProduction("PRD")).toBe(true);
    expect(nameSaysProduction("staging")).toBe(false);
    expect(nameSaysProduction("dev")).toBe(false);
    expect(nameSaysProduction("prod-like-test")).toBe(false);
  });

  it("defaults DATABASE_URL to SQLite under /data and generates a fresh 43-character SECRET_KEY", () => {
    expect(localDefault("DATABASE_URL").value).toBe("sqlite:////data/app.db");
    const a = localDefault("SECRET_KEY").value;
    const b = localDefault("SECRET_KEY").value;
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a).not.toBe(b);
  });

  it("names every missing secret and the exact commands in the prod refusal", () => {
    expect(prodRefusal("prod", ["DATABASE_URL", "SECRET_KEY"])).toBe(
      [
        'Refusing to invent secrets for production stack "prod".',
        "Missing: secrets.DATABASE_URL, secrets.SECRET_KEY.",
        "Set each with its real value (read from stdin, so it stays out of argv and shell history):",
        "  npm run rotate -- --stack prod DATABASE_URL < file-holding-the-value",
        "  pulumi config set --secret --path 'secrets.DATABASE_URL' --stack prod < file-holding-the-value",
        "  npm run rotate -- --stack prod SECRET_KEY < file-holding-the-value",
        "  pulumi config set --secret --path 'secrets.SECRET_KEY' --stack prod < file-holding-the-value",
        "  (SECRET_KEY can be generated: npm run rotate -- --stack prod SECRET_KEY --generate)",
      ].join("\n"),
    );
  });

  it("never generates a passphrase for the user's own backend, and respects theirs", () => {
    expect(resolvePassphrase({}, { kind: "user", reason: "logged-in" }, true)).toEqual({ kind: "none" });
    expect(resolvePassphrase({ PULUMI_CONFIG_PASSPHRASE: "" }, { kind: "project-local", url: "file:///x", dir: "/nonexistent" }, true)).toEqual({
      kind: "user",
      variable: "PULUMI_CONFIG_PASSPHRASE",
    });
  });
});

describe("the host port of a new personal stack", () => {
  it("skips ports other stack files claim and ports something listens on", async () => {
    const dir = makeProjectDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const first = HOST_PORT_RANGE.first;
    fs.writeFileSync(path.join(dir, "Pulumi.staging.yaml"), `config:\n  backend-delivery:service:\n    hostPort: ${first}\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.prod.yaml"), `config:\n  backend-delivery:service:\n    hostPort: "${first + 1}"\n`);
    fs.writeFileSync(path.join(dir, "Pulumi.broken.yaml"), "config: [unclosed\n");
    expect([...claimedHostPorts(dir)].sort()).toEqual([first, first + 1]);

    // Something listens on the next port: it is skipped too.
    const server = net.createServer();
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: first + 2 }, resolve);
    });
    try {
      const chosen = await chooseHostPort(dir, { first, last: first + 2 });
      expect(chosen).toBeUndefined();
      const next = await chooseHostPort(dir, { first, last: HOST_PORT_RANGE.last });
      expect(next).toBeGreaterThan(first + 2);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("npm run up (subprocess, stand-in pulumi)", () => {
  it("on a fresh clone: local backend, generated passphrase, new stack, local secrets on stdin, then pulumi up", async () => {
    const { fake, dir } = setup();
    // What the script will choose: the first port of its range that is free and unclaimed now.
    const port = await chooseHostPort(dir);
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);

    const calls = fake.calls();
    expect(commands(calls)).toEqual([
      "whoami --json --non-interactive",
      "stack ls --json --non-interactive",
      "stack init staging --non-interactive",
      "config get environment --stack staging --json --non-interactive",
      "config set environment staging --stack staging --non-interactive",
      "config get --path service.hostPort --stack staging --json --non-interactive",
      `config set --path service.hostPort ${port} --stack staging --non-interactive`,
      "config get --path secrets.DATABASE_URL --stack staging --json --non-interactive",
      "config get --path secrets.SECRET_KEY --stack staging --json --non-interactive",
      "config set --secret --path secrets.DATABASE_URL --stack staging --non-interactive",
      "config set --secret --path secrets.SECRET_KEY --stack staging --non-interactive",
      "up --stack staging --policy-pack policy",
    ]);

    const stateDir = path.join(dir, ".pulumi-state");
    const passFile = path.join(stateDir, "passphrase");
    // whoami runs with the user's environment untouched; everything after it on the local backend.
    expect(calls[0]?.env).toEqual({});
    for (const call of calls.slice(1)) {
      expect(call.cwd).toBe(dir);
      expect(call.env).toEqual({ PULUMI_BACKEND_URL: `file://${stateDir}`, PULUMI_CONFIG_PASSPHRASE_FILE: passFile });
    }

    expect(fs.statSync(stateDir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(passFile).mode & 0o777).toBe(0o600);
    const passphrase = fs.readFileSync(passFile, "utf8");
    expect(passphrase).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(fs.readFileSync(path.join(stateDir, ".gitignore"), "utf8")).toBe("*\n");

    const stored = fake.stacks().staging;
    expect(stored?.environment).toEqual({ value: "staging", secret: false });
    expect(stored?.["secrets.DATABASE_URL"]).toEqual({ value: LOCAL_DATABASE_URL, secret: true });
    const secretKey = stored?.["secrets.SECRET_KEY"];
    expect(secretKey?.secret).toBe(true);
    expect(secretKey?.value).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Values reached pulumi on stdin only, exactly, with nothing else on stdin anywhere.
    expect(calls.map((c) => c.stdin)).toEqual(["", "", "", "", "", "", "", "", "", LOCAL_DATABASE_URL, secretKey?.value, ""]);
    for (const c of calls) {
      expect(c.argv.join(" ")).not.toContain(secretKey?.value);
      expect(c.argv.join(" ")).not.toContain(passphrase);
    }
    expect(res.stdout).not.toContain(secretKey?.value);
    expect(res.stdout).not.toContain(passphrase);
    expect(res.stdout).toContain("Created stack staging.");
    expect(res.stdout).toContain("environment was unset: set it to staging.");
    expect(res.stdout).toContain("secrets.DATABASE_URL was unset: set it to a local default, SQLite on the container's /data volume (sqlite:////data/app.db)");
    expect(res.stdout).toContain("secrets.SECRET_KEY was unset: set it to a local default, a generated random key (32 bytes), stored encrypted.");
    expect(res.stdout).toContain("Generated a local passphrase in .pulumi-state/passphrase (mode 0600).");
    expect(res.stdout).toContain(`service.hostPort was unset: set it to ${port}, free on 127.0.0.1 and used by no other stack file of this project.`);
    expect(stored?.["service.hostPort"]).toEqual({ value: String(port), secret: false });
    expect(res.stdout).toContain("fake pulumi up: staging");
  });

  it("keeps an already-set secret untouched and the passphrase across runs, and passes extra args to pulumi up", async () => {
    const { fake, dir } = setup({
      stacks: {
        staging: {
          environment: { value: "staging", secret: false },
          "service.hostPort": { value: "8080", secret: false },
          "secrets.SECRET_KEY": { value: CANARY_SECRET_KEY, secret: true },
        },
      },
    });
    const stateDir = path.join(dir, ".pulumi-state");
    fs.mkdirSync(path.join(stateDir, ".pulumi"), { recursive: true, mode: 0o700 });
    // A passphrase that was readable by others gets tightened, not replaced.
    fs.writeFileSync(path.join(stateDir, "passphrase"), "existing-local-passphrase", { mode: 0o644 });

    const res = await runScript("up", ["staging", "--", "--yes", "--skip-preview"], { fake, projectDir: dir });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(commands(fake.calls())).toEqual([
      "whoami --json --non-interactive",
      "stack ls --json --non-interactive",
      "config get environment --stack staging --json --non-interactive",
      "config get --path service.hostPort --stack staging --json --non-interactive",
      "config get --path secrets.DATABASE_URL --stack staging --json --non-interactive",
      "config get --path secrets.SECRET_KEY --stack staging --json --non-interactive",
      "config set --secret --path secrets.DATABASE_URL --stack staging --non-interactive",
      "up --stack staging --policy-pack policy --yes --skip-preview",
    ]);
    expect(fake.stacks().staging?.["secrets.SECRET_KEY"]).toEqual({ value: CANARY_SECRET_KEY, secret: true });
    expect(fs.readFileSync(path.join(stateDir, "passphrase"), "utf8")).toBe("existing-local-passphrase");
    expect(fs.statSync(path.join(stateDir, "passphrase")).mode & 0o777).toBe(0o600);
    expect(res.stdout).not.toContain("Generated a local passphrase");
    expect(res.stdout).not.toContain("SECRET_KEY was unset");
    for (const text of [res.stdout, res.stderr, ...fake.calls().map((c) => c.argv.join(" ") + c.stdin)]) {
      expect(text).not.toContain(CANARY_SECRET_KEY);
    }
  });

  it("refuses to invent secrets for a prod stack: names them, gives the commands, runs no update", async () => {
    const { fake, dir } = setup({
      stacks: { live: { environment: { value: "prod", secret: false } } },
    });
    const res = await runScript("up", ["live"], { fake, projectDir: dir });
    expect(res.code).toBe(3);
    expect(res.stderr).toBe(`${prodRefusal("live", ["DATABASE_URL", "SECRET_KEY"])}\n`);
    expect(commands(fake.calls())).toEqual([
      "whoami --json --non-interactive",
      "stack ls --json --non-interactive",
      "config get environment --stack live --json --non-interactive",
      "config get --path secrets.DATABASE_URL --stack live --json --non-interactive",
      "config get --path secrets.SECRET_KEY --stack live --json --non-interactive",
    ]);
    expect(fake.stacks().live).toEqual({ environment: { value: "prod", secret: false } });
  });

  it("refuses a stack named prod whose environment is unset, and does not call it staging", async () => {
    const { fake, dir } = setup({
      stacks: { prod: { "secrets.DATABASE_URL": { value: CANARY_DATABASE_URL, secret: true } } },
    });
    const res = await runScript("up", ["prod"], { fake, projectDir: dir });
    expect(res.code).toBe(3);
    expect(res.stderr).toBe(`${unsetProductionRole("prod")}\n`);
    expect(res.stderr).toContain("pulumi config set --stack prod environment prod");
    expect(commands(fake.calls()).filter((c) => c.startsWith("config set") || c.startsWith("up"))).toEqual([]);
    expect(res.stdout + res.stderr).not.toContain(CANARY_DATABASE_URL);
  });

  it("runs pulumi up for a prod stack whose secrets are all set, inventing nothing", async () => {
    const { fake, dir } = setup({
      stacks: {
        prod: {
          environment: { value: "prod", secret: false },
          "secrets.DATABASE_URL": { value: CANARY_DATABASE_URL, secret: true },
          "secrets.SECRET_KEY": { value: CANARY_SECRET_KEY, secret: true },
        },
      },
    });
    const res = await runScript("up", ["prod"], { fake, projectDir: dir });
    expect(res.code).toBe(0);
    expect(commands(fake.calls()).at(-1)).toBe("up --stack prod --policy-pack policy");
    expect(res.stdout).toContain("Note: prod is a production stack on the project-local state backend.");
    expect(commands(fake.calls()).filter((c) => c.startsWith("config set"))).toEqual([]);
    for (const canary of [CANARY_DATABASE_URL, CANARY_SECRET_KEY]) expect(res.stdout + res.stderr).not.toContain(canary);
  });

  it("refuses a secret stored in plain text instead of overwriting it", async () => {
    const { fake, dir } = setup({
      stacks: {
        staging: {
          environment: { value: "staging", secret: false },
          "secrets.DATABASE_URL": { value: CANARY_DATABASE_URL, secret: false },
          "secrets.SECRET_KEY": { value: CANARY_SECRET_KEY, secret: true },
        },
      },
    });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("secrets.DATABASE_URL of stack staging is stored in plain text. Store it encrypted:");
    expect(res.stderr).toContain("npm run rotate -- --stack staging DATABASE_URL < file-holding-the-value");
    expect(res.stderr).not.toContain(CANARY_DATABASE_URL);
    expect(fake.stacks().staging?.["secrets.DATABASE_URL"]).toEqual({ value: CANARY_DATABASE_URL, secret: false });
  });

  it("respects the user's PULUMI_BACKEND_URL and passphrase: no whoami, no .pulumi-state", async () => {
    const { fake, dir } = setup();
    const theirs = { PULUMI_BACKEND_URL: "file:///srv/team-state", PULUMI_CONFIG_PASSPHRASE_FILE: path.join(dir, "their-pass") };
    fs.writeFileSync(theirs.PULUMI_CONFIG_PASSPHRASE_FILE, "theirs", { mode: 0o600 });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir, env: theirs });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    const calls = fake.calls();
    expect(calls[0]?.argv).toEqual(["stack", "ls", "--json", "--non-interactive"]);
    for (const c of calls) expect(c.env).toEqual(theirs);
    expect(fs.existsSync(path.join(dir, ".pulumi-state"))).toBe(false);
    expect(res.stdout).toContain("State backend: yours, from PULUMI_BACKEND_URL (file:///srv/team-state).");
    expect(res.stdout).toContain("Passphrase: yours, from PULUMI_CONFIG_PASSPHRASE_FILE.");
  });

  it("keeps a pulumi login: no backend or passphrase injected, no .pulumi-state created", async () => {
    const { fake, dir } = setup({
      whoami: { code: 0, stdout: JSON.stringify({ user: "alice", organizations: ["acme"], url: "https://app.pulumi.com/alice" }) },
    });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    for (const c of fake.calls()) expect(c.env).toEqual({});
    expect(fs.existsSync(path.join(dir, ".pulumi-state"))).toBe(false);
    expect(res.stdout).toContain("State backend: yours, from your Pulumi login (https://app.pulumi.com/alice).");
  });

  it("recognises a login on a CLI without `whoami --json`", async () => {
    const { fake, dir } = setup({ whoami: { code: 0, stdout: "alice\n", noJsonFlag: true } });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.code).toBe(0);
    expect(commands(fake.calls()).slice(0, 3)).toEqual([
      "whoami --json --non-interactive",
      "whoami --non-interactive",
      "stack ls --json --non-interactive",
    ]);
    for (const c of fake.calls()) expect(c.env).toEqual({});
    expect(fs.existsSync(path.join(dir, ".pulumi-state"))).toBe(false);
  });

  it("refuses to mint a new passphrase for local state that already holds stacks", async () => {
    const { fake, dir } = setup();
    fs.mkdirSync(path.join(dir, ".pulumi-state", ".pulumi"), { recursive: true });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain(".pulumi-state/passphrase is missing, but .pulumi-state/ already holds stacks encrypted with it");
    expect(commands(fake.calls())).toEqual(["whoami --json --non-interactive"]);
    expect(fs.existsSync(path.join(dir, ".pulumi-state", "passphrase"))).toBe(false);
  });

  it("passes pulumi up's failure on as the exit code", async () => {
    const { fake, dir } = setup({ up: { code: 255 } });
    const res = await runScript("up", ["staging"], { fake, projectDir: dir });
    expect(res.code).toBe(255);
  });

  it("exits 2 with the usage and runs nothing when the stack is missing", async () => {
    const { fake, dir } = setup();
    const res = await runScript("up", [], { fake, projectDir: dir });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("A stack name is required.");
    expect(fake.calls()).toEqual([]);
  });

  it("says how to get the Pulumi CLI when it is not on PATH", async () => {
    const dir = makeProjectDir();
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const res = await runScript("up", ["staging"], { projectDir: dir, path: path.join(dir, "empty-bin") });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("The Pulumi CLI (`pulumi`) was not found on PATH.");
  });
});
