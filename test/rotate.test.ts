/**
 * `npm run rotate -- --stack <stack> <ENV_VAR>`: the pure rules, then the real script as a
 * subprocess against a stand-in `pulumi`; a canary value must reach pulumi's stdin and nothing else.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseRotateArgs } from "../scripts/lib/cliArgs";
import { parseUrn } from "../scripts/lib/preview/document";
import { formatPreview, summarizePreview } from "../scripts/lib/preview/rotationReport";
import { normalizeSecretInput } from "../scripts/lib/stackSecrets";
import { type FakePulumi, type FakeScenario, createFakePulumi, makeProjectDir, runScript } from "../support/fakePulumi";

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

const CANARY = "canary-rotated-value-7f3e9a1c4b2d8e6f0a5c3b1d9e7f2a4c";
const PREFIX = "urn:pulumi:staging::backend-delivery::";
const CONTAINER_URN = `${PREFIX}backend-delivery:service:BackendService$docker:index/container:Container::staging-backend-container`;
const READINESS_URN = `${PREFIX}backend-delivery:service:ReadinessCheck$pulumi-nodejs:dynamic:Resource::staging-readiness`;
const IMAGE_URN = `${PREFIX}backend-delivery:image:BackendImage$docker:index/image:Image::staging-image`;
const PROVIDER = `${PREFIX}pulumi:providers:docker::default_4_5_0::04da6b54-80e4-46f7-96ec-b56ff0331ba9`;

/**
 * A `pulumi preview --json` document in Pulumi's preview-digest shape: secret inputs appear as
 * "[secret]" (as the CLI renders them), the replacement shows up as its three steps.
 */
const PREVIEW_ROTATION = {
  config: { "backend-delivery:environment": "staging", "backend-delivery:secrets": "[secret]" },
  steps: [
    { op: "same", urn: `${PREFIX}pulumi:pulumi:Stack::backend-delivery-staging` },
    {
      op: "same",
      urn: IMAGE_URN,
      provider: PROVIDER,
      oldState: { urn: IMAGE_URN, custom: true, type: "docker:index/image:Image", inputs: { imageName: "backend-delivery" } },
      newState: { urn: IMAGE_URN, custom: true, type: "docker:index/image:Image", inputs: { imageName: "backend-delivery" } },
    },
    {
      op: "replace",
      urn: CONTAINER_URN,
      provider: PROVIDER,
      oldState: { urn: CONTAINER_URN, custom: true, type: "docker:index/container:Container", inputs: { envs: "[secret]" } },
      newState: { urn: CONTAINER_URN, custom: true, type: "docker:index/container:Container", inputs: { envs: "[secret]" } },
      diffReasons: ["envs"],
      replaceReasons: ["envs"],
      detailedDiff: { envs: { kind: "update-replace", inputDiff: true } },
    },
    { op: "create-replacement", urn: CONTAINER_URN, provider: PROVIDER, replaceReasons: ["envs"] },
    { op: "delete-replaced", urn: CONTAINER_URN, provider: PROVIDER },
    {
      op: "update",
      urn: READINESS_URN,
      newState: { urn: READINESS_URN, custom: true, type: "pulumi-nodejs:dynamic:Resource", inputs: {} },
      diffReasons: ["containerId"],
      detailedDiff: { containerId: { kind: "update", inputDiff: true } },
    },
  ],
  diagnostics: [{ message: "Building image ./backend\n", severity: "info" }],
  duration: 1_830_000_000,
  changeSummary: { replace: 1, update: 1, same: 2 },
};

/** A failed preview: the program threw; the error diagnostic is what the user must see. */
function failedPreview(message: string) {
  return {
    config: {},
    steps: [{ op: "create", urn: `${PREFIX}pulumi:pulumi:Stack::backend-delivery-staging` }],
    diagnostics: [{ urn: `${PREFIX}pulumi:pulumi:Stack::backend-delivery-staging`, message, severity: "error" }],
    duration: 400_000_000,
    changeSummary: { create: 1 },
  };
}

function setup(scenario: FakeScenario = {}, localState = true): { fake: FakePulumi; dir: string } {
  const fake = createFakePulumi({
    stacks: { staging: { environment: { value: "staging", secret: false }, "secrets.SECRET_KEY": { value: "old-value-0000000000000000000000000", secret: true } } },
    preview: { code: 0, stdout: JSON.stringify(PREVIEW_ROTATION, null, 4) },
    ...scenario,
  });
  const dir = makeProjectDir();
  if (localState) {
    // What a previous `npm run up` leaves behind.
    fs.mkdirSync(path.join(dir, ".pulumi-state", ".pulumi"), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, ".pulumi-state", "passphrase"), "local-passphrase", { mode: 0o600 });
  }
  cleanups.push(() => fake.cleanup(), () => fs.rmSync(dir, { recursive: true, force: true }));
  return { fake, dir };
}

const commands = (fake: FakePulumi) => fake.calls().map((c) => c.argv.join(" "));

/** Runs a command with exactly `env`, resolving to its stdout; rejects on a non-zero exit. */
function runCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

describe("parseRotateArgs", () => {
  it("reads --stack, the variable name and --generate in any order", () => {
    expect(parseRotateArgs(["--stack", "staging", "SECRET_KEY"])).toEqual({
      ok: true,
      value: { stack: "staging", name: "SECRET_KEY", generate: false },
    });
    expect(parseRotateArgs(["--", "SECRET_KEY", "--generate", "--stack=prod"])).toEqual({
      ok: true,
      value: { stack: "prod", name: "SECRET_KEY", generate: true },
    });
  });

  it("refuses a value on the command line without echoing it", () => {
    const r = parseRotateArgs(["--stack", "staging", "SECRET_KEY", CANARY]);
    expect(r).toEqual({ ok: false, error: expect.stringContaining("Expected exactly one environment variable name, got 2 words.") });
    if (!r.ok) expect(r.error).not.toContain(CANARY);
    const opt = parseRotateArgs(["--stack", "staging", "SECRET_KEY", `--value=${CANARY}`]);
    expect(opt.ok).toBe(false);
    if (!opt.ok) {
      expect(opt.error).toContain('Unknown option "--value".');
      expect(opt.error).not.toContain(CANARY);
    }
  });

  it("refuses a missing stack, a bad name, a program-managed name and --generate for DATABASE_URL", () => {
    const errors = [
      parseRotateArgs(["SECRET_KEY"]),
      parseRotateArgs(["--stack", "staging", "1BAD-NAME"]),
      parseRotateArgs(["--stack", "staging", "PORT"]),
      parseRotateArgs(["--stack", "staging", "DATABASE_URL", "--generate"]),
      parseRotateArgs(["--stack"]),
    ].map((r) => (r.ok ? "accepted" : r.error.split("\n")[0]));
    expect(errors).toEqual([
      "--stack <stack> is required.",
      "The name given is not an environment variable name: use letters, digits and _, not starting with a digit (e.g. SECRET_KEY).",
      "PORT is set by the program itself and cannot be a secret.",
      "DATABASE_URL is a connection URL, not a random token: pipe the new URL on stdin instead of --generate.",
      "--stack needs a stack name.",
    ]);
  });
});

describe("normalizeSecretInput", () => {
  it("drops one trailing newline and keeps everything else exactly", () => {
    expect(normalizeSecretInput(`${CANARY}\n`)).toEqual({ value: CANARY });
    expect(normalizeSecretInput(`${CANARY}\r\n`)).toEqual({ value: CANARY });
    expect(normalizeSecretInput("p@ss w0rd$!'\"")).toEqual({ value: "p@ss w0rd$!'\"" });
  });

  it("refuses empty, multi-line, NUL and padded values", () => {
    const errs = ["", "\n", "a\nb", "a\0b", " padded", "padded\t"].map((raw) => {
      const r = normalizeSecretInput(raw);
      return "error" in r ? r.error.split(" ").slice(0, 5).join(" ") : "accepted";
    });
    expect(errs).toEqual([
      "The new value is empty.",
      "The new value is empty.",
      "The new value spans several",
      "The new value contains a",
      "The new value starts or",
      "The new value starts or",
    ]);
  });
});

describe("summarizePreview", () => {
  it("reads changed resources and property names from the documented preview JSON", () => {
    const summary = summarizePreview(PREVIEW_ROTATION);
    expect(summary).toEqual({
      same: 1,
      errors: [],
      changes: [
        { kind: "replace", type: "docker:index/container:Container", name: "staging-backend-container", urn: CONTAINER_URN, keys: ["envs"] },
        { kind: "update", type: "pulumi-nodejs:dynamic:Resource", name: "staging-readiness", urn: READINESS_URN, keys: ["containerId"] },
      ],
    });
    expect(formatPreview(summary, "staging")).toEqual([
      "Containers of stack staging that change on the next `pulumi up`:",
      "  replace staging-backend-container (docker:index/container:Container)  changed: envs",
      "Other changes:",
      "  update  staging-readiness (pulumi-nodejs:dynamic:Resource)  changed: containerId",
      "Summary: 1 to replace, 1 to update, 0 to create, 0 to delete, 1 unchanged.",
    ]);
  });

  it("collects error diagnostics and says when no container changes", () => {
    const summary = summarizePreview(failedPreview("Error: secrets.DATABASE_URL: expected a postgresql:// URL"));
    expect(summary.errors).toEqual(["Error: secrets.DATABASE_URL: expected a postgresql:// URL"]);
    expect(formatPreview({ changes: [], same: 4, errors: [] }, "prod")).toEqual([
      "No container of stack prod changes.",
      "Summary: 0 to replace, 0 to update, 0 to create, 0 to delete, 4 unchanged.",
    ]);
    expect(() => summarizePreview("not a document")).toThrow("the preview output is not a JSON object");
  });

  it("splits URNs with parent types and names containing ::", () => {
    expect(parseUrn(CONTAINER_URN)).toEqual({ type: "docker:index/container:Container", name: "staging-backend-container" });
    expect(parseUrn(`${PREFIX}random:index/randomId:RandomId::a::b`)).toEqual({ type: "random:index/randomId:RandomId", name: "a::b" });
  });
});

describe("npm run rotate (subprocess, stand-in pulumi)", () => {
  it("stores the stdin value via stdin only, then reports the replaced container and changed keys, never the value", async () => {
    const { fake, dir } = setup();
    const res = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: `${CANARY}\n` });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(commands(fake)).toEqual([
      "whoami --json --non-interactive",
      "stack ls --json --non-interactive",
      "config set --secret --path secrets.SECRET_KEY --stack staging --non-interactive",
      "preview --stack staging --json --non-interactive --policy-pack policy",
    ]);
    const calls = fake.calls();
    expect(calls.map((c) => c.stdin)).toEqual(["", "", CANARY, ""]);
    const stateDir = path.join(dir, ".pulumi-state");
    for (const c of calls.slice(1)) {
      expect(c.env).toEqual({ PULUMI_BACKEND_URL: `file://${stateDir}`, PULUMI_CONFIG_PASSPHRASE_FILE: path.join(stateDir, "passphrase") });
    }
    expect(fake.stacks().staging?.["secrets.SECRET_KEY"]).toEqual({ value: CANARY, secret: true });
    for (const text of [res.stdout, res.stderr, ...calls.map((c) => c.argv.join(" "))]) expect(text).not.toContain(CANARY);
    expect(res.stdout).toContain("Stored secrets.SECRET_KEY for stack staging, encrypted. The value is not shown.");
    expect(res.stdout).toContain(
      [
        "Config key changed: secrets.SECRET_KEY",
        "Containers of stack staging that change on the next `pulumi up`:",
        "  replace staging-backend-container (docker:index/container:Container)  changed: envs",
        "Other changes:",
        "  update  staging-readiness (pulumi-nodejs:dynamic:Resource)  changed: containerId",
        "Summary: 1 to replace, 1 to update, 0 to create, 0 to delete, 1 unchanged.",
        "Apply it with: pulumi up --stack staging   (or: npm run up -- staging)",
      ].join("\n"),
    );
  });

  it("--generate stores a fresh strong value each time and prints none of them", async () => {
    const { fake, dir } = setup();
    const first = await runScript("rotate", ["--stack", "staging", "SECRET_KEY", "--generate"], { fake, projectDir: dir });
    const second = await runScript("rotate", ["--stack", "staging", "API_TOKEN", "--generate"], { fake, projectDir: dir });
    expect([first.code, second.code]).toEqual([0, 0]);
    const sets = fake.calls().filter((c) => c.argv[0] === "config");
    expect(sets.map((c) => c.argv[4])).toEqual(["secrets.SECRET_KEY", "secrets.API_TOKEN"]);
    const values = sets.map((c) => c.stdin);
    for (const v of values) expect(v).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(values[0]).not.toBe(values[1]);
    for (const v of values) {
      for (const text of [first.stdout, first.stderr, second.stdout, second.stderr, ...fake.calls().map((c) => c.argv.join(" "))]) {
        expect(text).not.toContain(v);
      }
    }
    expect(first.stdout).toContain("Stored secrets.SECRET_KEY for stack staging, encrypted (generated: 32 random bytes).");
  });

  it("refuses an empty or multi-line value before calling pulumi at all (exit 2)", async () => {
    const { fake, dir } = setup();
    const empty = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: "" });
    const multi = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: `${CANARY}\nsecond line\n` });
    expect([empty.code, multi.code]).toEqual([2, 2]);
    expect(empty.stderr).toContain("The new value is empty.");
    expect(multi.stderr).toContain("The new value spans several lines");
    expect(multi.stderr).not.toContain(CANARY);
    expect(fake.calls()).toEqual([]);
  });

  it("refuses a value passed as an argument, without echoing it or calling pulumi", async () => {
    const { fake, dir } = setup();
    const res = await runScript("rotate", ["--stack", "staging", "SECRET_KEY", CANARY], { fake, projectDir: dir });
    expect(res.code).toBe(2);
    expect(res.stdout + res.stderr).not.toContain(CANARY);
    expect(fake.calls()).toEqual([]);
  });

  it("refuses a stack the backend does not hold, storing nothing (exit 3)", async () => {
    const { fake, dir } = setup();
    const res = await runScript("rotate", ["--stack", "qa", "SECRET_KEY"], { fake, projectDir: dir, stdin: CANARY });
    expect(res.code).toBe(3);
    expect(res.stderr).toBe("Stack qa does not exist in this backend; nothing was stored. Create it first: npm run up -- qa\n");
    expect(commands(fake)).toEqual(["whoami --json --non-interactive", "stack ls --json --non-interactive"]);
  });

  it("refuses when there is no backend at all: not logged in and no local state (exit 3)", async () => {
    const { fake, dir } = setup({}, false);
    const res = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: CANARY });
    expect(res.code).toBe(3);
    expect(res.stderr).toContain("No Pulumi state backend: you are not logged in");
    expect(commands(fake)).toEqual(["whoami --json --non-interactive"]);
    expect(fs.existsSync(path.join(dir, ".pulumi-state"))).toBe(false);
  });

  it("says the value is stored when the preview then fails (exit 4), with pulumi's error and the value blanked", async () => {
    const { fake, dir } = setup({
      // Even if a program error were to quote the value, it must not get through.
      preview: { code: 255, stdout: JSON.stringify(failedPreview(`Error: bad SECRET_KEY ${CANARY}`)), stderr: "" },
    });
    const res = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: CANARY });
    expect(res.code).toBe(4);
    expect(res.stderr).toBe(
      "secrets.SECRET_KEY IS stored, but `pulumi preview --stack staging` failed (exit 255):\n" +
        "Error: bad SECRET_KEY [secret]\nFix the problem, then run: pulumi preview --stack staging\n",
    );
    expect(res.stdout + res.stderr).not.toContain(CANARY);
    expect(fake.stacks().staging?.["secrets.SECRET_KEY"]).toEqual({ value: CANARY, secret: true });
  });

  it("on a terminal, prompts without echoing what is typed (backspace edits the value)", async () => {
    const { fake, dir } = setup();
    // Node has no pseudo-terminal of its own; Python's pty module (present wherever the backend's
    // tests run) gives the script a real TTY. Typing starts only once the prompt is shown, so the
    // terminal is already in raw mode and any echo would be the script's.
    const driver = [
      "import json, os, pty, sys, time",
      "pid, fd = pty.fork()",
      "if pid == 0:",
      "    os.execvpe(sys.argv[1], sys.argv[1:], os.environ)",
      "out = b''",
      "def pump(until):",
      "    global out",
      "    end = time.time() + 30",
      "    while until not in out and time.time() < end:",
      "        try: chunk = os.read(fd, 4096)",
      "        except OSError: return",
      "        if not chunk: return",
      "        out += chunk",
      "pump(b'(input hidden): ')",
      "os.write(fd, b'typed-canaryx' + bytes([127]) + b'-value' + bytes([13]))",
      "pump(b'\\0')  # read to the end: the output never holds a NUL",
      "_, status = os.waitpid(pid, 0)",
      "print(json.dumps({'code': os.waitstatus_to_exitcode(status), 'output': out.decode()}))",
    ].join("\n");
    const tsx = path.resolve(__dirname, "..", "node_modules", "tsx", "dist", "cli.mjs");
    const script = path.resolve(__dirname, "..", "scripts", "rotate.ts");
    const res = await runCommand(
      "python3",
      ["-c", driver, process.execPath, tsx, script, "--stack", "staging", "API_TOKEN"],
      {
        PATH: [fake.binDir, path.dirname(process.execPath), "/usr/bin", "/bin"].join(":"),
        HOME: dir,
        BACKEND_DELIVERY_PROJECT_DIR: dir,
        ...fake.env,
      },
    );
    const { code, output } = JSON.parse(res) as { code: number; output: string };
    expect(code).toBe(0);
    expect(output).toContain("New value for API_TOKEN (input hidden): ");
    expect(output).toContain("Stored secrets.API_TOKEN for stack staging, encrypted. The value is not shown.");
    expect(output).not.toContain("typed-canary");
    expect(fake.calls().find((c) => c.argv[0] === "config")?.stdin).toBe("typed-canary-value");
  });

  it("uses the user's own backend and passphrase when they are set", async () => {
    const { fake, dir } = setup({}, false);
    const theirs = { PULUMI_BACKEND_URL: "s3://team-state", PULUMI_CONFIG_PASSPHRASE: "their-passphrase" };
    const res = await runScript("rotate", ["--stack", "staging", "SECRET_KEY"], { fake, projectDir: dir, stdin: CANARY, env: theirs });
    expect(res.stderr).toBe("");
    expect(res.code).toBe(0);
    expect(commands(fake)[0]).toBe("stack ls --json --non-interactive");
    for (const c of fake.calls()) expect(c.env).toEqual(theirs);
    expect(res.stdout).not.toContain("their-passphrase");
  });
});
