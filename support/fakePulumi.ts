/**
 * A stand-in `pulumi` executable for testing the command-line helpers without the Pulumi CLI.
 *
 * `createFakePulumi` writes a small Node script named `pulumi` into a temp `bin/` directory (put it
 * first on PATH). Every call appends one JSON line to a log: argv, working directory, the relevant
 * environment and everything received on stdin. It answers from a scenario and keeps a tiny stack
 * store (stacks, their config and tags) in a JSON file, so `stack init`, `config set`, `config get`,
 * `config --json` and `stack tag` behave consistently within one test. Like the real CLI it exits 255 with `error: ...` on stderr,
 * and refuses passphrase-encrypted work on a `file://` backend when no passphrase is configured.
 * Anything it does not know exits 99, so an unexpected call fails the test.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** One stored config value. */
export interface FakeConfigValue {
  value: string;
  secret: boolean;
}

/** What the stand-in answers. */
export interface FakeScenario {
  /** `pulumi whoami`; default: not logged in (exit 255). `noJsonFlag` mimics CLIs without `whoami --json`. */
  whoami?: { code: number; stdout?: string; stderr?: string; noJsonFlag?: boolean };
  /** Stacks that exist before the run: name -> config (`environment`, `secrets.SECRET_KEY`, ...). */
  stacks?: Record<string, Record<string, FakeConfigValue>>;
  /** `pulumi preview`: what it prints on stdout and its exit code. */
  preview?: { code: number; stdout: string; stderr?: string };
  /** `pulumi up`: exit code (default 0). */
  up?: { code: number };
}

/** One recorded call. */
export interface FakeCall {
  argv: string[];
  cwd: string;
  stdin: string;
  env: {
    PULUMI_BACKEND_URL?: string;
    PULUMI_CONFIG_PASSPHRASE_FILE?: string;
    PULUMI_CONFIG_PASSPHRASE?: string;
  };
}

/** A stand-in installation: where it lives and what it saw. */
export interface FakePulumi {
  /** Directory holding the `pulumi` executable. */
  binDir: string;
  /** Environment entries that make the helpers find and drive the stand-in. */
  env: NodeJS.ProcessEnv;
  calls(): FakeCall[];
  /** The stack store as it is now. */
  stacks(): Record<string, Record<string, FakeConfigValue>>;
  /** Stack tags as `pulumi stack tag set` stored them: stack -> name -> value. */
  tags(): Record<string, Record<string, string>>;
  cleanup(): void;
}

// Plain JavaScript (CommonJS): it runs under whatever `node` is on PATH, without a TypeScript loader.
const SCRIPT = String.raw`#!/usr/bin/env node
"use strict";
const fs = require("fs");
const storeFile = process.env.FAKE_PULUMI_STORE;
const logFile = process.env.FAKE_PULUMI_LOG;
const argv = process.argv.slice(2);
let stdin = "";
if (!process.stdin.isTTY) {
  try { stdin = fs.readFileSync(0, "utf8"); } catch { stdin = ""; }
}
fs.appendFileSync(logFile, JSON.stringify({
  argv, cwd: process.cwd(), stdin,
  env: {
    PULUMI_BACKEND_URL: process.env.PULUMI_BACKEND_URL,
    PULUMI_CONFIG_PASSPHRASE_FILE: process.env.PULUMI_CONFIG_PASSPHRASE_FILE,
    PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE,
  },
}) + "\n");

const store = JSON.parse(fs.readFileSync(storeFile, "utf8"));
const save = () => fs.writeFileSync(storeFile, JSON.stringify(store, null, 2));
const fail = (msg, code = 255) => { process.stderr.write("error: " + msg + "\n"); process.exit(code); };
const out = (s) => process.stdout.write(s);

const flags = new Set();
const opts = {};
const words = [];
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === "--stack" || a === "-s") { opts.stack = argv[++i]; }
  else if (a.startsWith("--")) { flags.add(a); }
  else { words.push(a); }
}
const cmd = words.slice(0, 2).join(" ");
const backend = process.env.PULUMI_BACKEND_URL;
const passphraseReady = () => {
  if (!backend || !backend.startsWith("file://")) return true;
  const file = process.env.PULUMI_CONFIG_PASSPHRASE_FILE;
  if (file) {
    if (!fs.existsSync(file)) fail("unable to read PULUMI_CONFIG_PASSPHRASE_FILE: no such file " + file);
    return true;
  }
  return process.env.PULUMI_CONFIG_PASSPHRASE !== undefined;
};
const needPassphrase = () => {
  if (!passphraseReady()) fail("constructing secrets manager of type \"passphrase\": passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE environment variables");
};
const stackOf = () => {
  const name = opts.stack;
  if (!name || !store.stacks[name]) fail("no stack named '" + name + "' found");
  return store.stacks[name];
};

if (words[0] === "whoami") {
  const w = store.scenario.whoami;
  if (!w) fail("PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions");
  if (w.noJsonFlag && flags.has("--json")) fail("unknown flag: --json");
  out(w.stdout || "");
  if (w.stderr) process.stderr.write(w.stderr);
  process.exit(w.code);
} else if (cmd === "stack ls") {
  out(JSON.stringify(Object.keys(store.stacks).map((name) => ({ name, current: false, updateInProgress: false })), null, 4) + "\n");
} else if (cmd === "stack init") {
  const name = words[2] || opts.stack;
  if (store.stacks[name]) fail("stack '" + name + "' already exists");
  needPassphrase();
  store.stacks[name] = {};
  save();
  out("Created stack '" + name + "'\n");
} else if (cmd === "config get") {
  const stack = stackOf();
  const key = words[2];
  const entry = stack[key];
  if (!entry) fail("configuration key 'backend-delivery:" + key + "' not found for stack '" + opts.stack + "'");
  if (entry.secret) needPassphrase();
  out(flags.has("--json") ? JSON.stringify({ value: entry.value, secret: entry.secret }, null, 2) + "\n" : entry.value + "\n");
} else if (cmd === "config set") {
  const stack = stackOf();
  const key = words[2];
  let value = words[3];
  if (value === undefined) value = stdin.replace(/\r?\n$/, "");
  if (flags.has("--secret")) needPassphrase();
  stack[key] = { value, secret: flags.has("--secret") };
  save();
} else if (cmd === "stack tag" && words[2] === "set") {
  stackOf();
  store.tags = store.tags || {};
  store.tags[opts.stack] = Object.assign(store.tags[opts.stack] || {}, { [words[3]]: words[4] });
  save();
} else if (cmd === "stack tag" && words[2] === "get") {
  stackOf();
  const value = ((store.tags || {})[opts.stack] || {})[words[3]];
  if (value === undefined) fail("stack tag '" + words[3] + "' not found for stack '" + opts.stack + "'");
  out(value + "\n");
} else if (words[0] === "config" && words.length === 1 && flags.has("--json")) {
  const stack = stackOf();
  const shown = flags.has("--show-secrets");
  if (shown && Object.values(stack).some((e) => e.secret)) needPassphrase();
  const doc = {};
  for (const [key, entry] of Object.entries(stack)) {
    doc["backend-delivery:" + key] = entry.secret && !shown ? { secret: true } : { value: entry.value, secret: entry.secret };
  }
  out(JSON.stringify(doc, null, 2) + "\n");
} else if (words[0] === "preview") {
  stackOf();
  needPassphrase();
  const p = store.scenario.preview;
  if (!p) fail("fake pulumi: the scenario has no preview", 99);
  out(p.stdout);
  if (p.stderr) process.stderr.write(p.stderr);
  process.exit(p.code);
} else if (words[0] === "up") {
  stackOf();
  needPassphrase();
  out("fake pulumi up: " + opts.stack + "\n");
  process.exit(store.scenario.up ? store.scenario.up.code : 0);
} else {
  fail("fake pulumi: unexpected command: " + argv.join(" "), 99);
}
`;

/** Writes the stand-in and its store into a fresh temp directory. */
export function createFakePulumi(scenario: FakeScenario = {}): FakePulumi {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "fake-pulumi-"));
  const binDir = path.join(root, "bin");
  fs.mkdirSync(binDir);
  const exe = path.join(binDir, "pulumi");
  fs.writeFileSync(exe, SCRIPT, { mode: 0o755 });
  const storeFile = path.join(root, "store.json");
  const logFile = path.join(root, "calls.jsonl");
  const { stacks = {}, ...rest } = scenario;
  fs.writeFileSync(storeFile, JSON.stringify({ scenario: rest, stacks }, null, 2));
  fs.writeFileSync(logFile, "");
  return {
    binDir,
    env: { FAKE_PULUMI_STORE: storeFile, FAKE_PULUMI_LOG: logFile },
    calls: () =>
      fs
        .readFileSync(logFile, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => JSON.parse(l) as FakeCall),
    stacks: () => (JSON.parse(fs.readFileSync(storeFile, "utf8")) as { stacks: Record<string, Record<string, FakeConfigValue>> }).stacks,
    tags: () => (JSON.parse(fs.readFileSync(storeFile, "utf8")) as { tags?: Record<string, Record<string, string>> }).tags ?? {},
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}

const REPO_ROOT = path.resolve(__dirname, "..");
const TSX_CLI = path.join(REPO_ROOT, "node_modules", "tsx", "dist", "cli.mjs");

/** What a helper run printed and returned. */
export interface ScriptResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A scratch project directory with a minimal `Pulumi.yaml`, so no test touches the repository's state. */
export function makeProjectDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-project-"));
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: backend-delivery\nruntime: nodejs\n");
  return dir;
}

/** A scratch project whose project-local backend already holds state and its passphrase (`npm run up` ran before). */
export function makeProjectDirWithLocalState(): string {
  const dir = makeProjectDir();
  fs.mkdirSync(path.join(dir, ".pulumi-state", ".pulumi"), { recursive: true });
  fs.writeFileSync(path.join(dir, ".pulumi-state", "passphrase"), "p", { mode: 0o600 });
  return dir;
}

/**
 * Runs `scripts/<name>.ts` as a real subprocess (Node + tsx, as `npm run` does) with a clean
 * environment: the stand-in first on PATH, HOME in a scratch directory, no PULUMI_* variables
 * unless `env` adds them. `stdin` is written and closed (empty when omitted).
 */
export function runScript(
  name: "up" | "rotate" | "drift" | "status" | "signing",
  args: readonly string[],
  opts: { fake?: FakePulumi; projectDir: string; stdin?: string; env?: NodeJS.ProcessEnv; path?: string },
): Promise<ScriptResult> {
  const home = path.join(opts.projectDir, ".home");
  fs.mkdirSync(home, { recursive: true });
  const searchPath = opts.path ?? [opts.fake?.binDir, path.dirname(process.execPath), "/usr/bin", "/bin"].filter(Boolean).join(":");
  const env: NodeJS.ProcessEnv = {
    PATH: searchPath,
    HOME: home,
    BACKEND_DELIVERY_PROJECT_DIR: opts.projectDir,
    ...(opts.fake?.env ?? {}),
    ...(opts.env ?? {}),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [TSX_CLI, path.join(REPO_ROOT, "scripts", `${name}.ts`), ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.stdin ?? "");
  });
}
