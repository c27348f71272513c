/**
 * The real Pulumi engine for end-to-end tests and benchmarks: a scratch copy of this repository's
 * program under a project name of its own, a file state backend inside it, a Pulumi home of its
 * own (so no login of the machine's user is ever seen or changed), and helpers to drive the real
 * CLI, the Automation API and the command-line helpers (`npm run up`, `rotate`) against it.
 *
 * The copy keeps the tests away from the repository's own stack files and `.pulumi-state/`, and its
 * project name keeps its Docker resources apart from a developer's own local stacks.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { LocalWorkspace, type Stack } from "@pulumi/pulumi/automation";
import { parse as parseYaml, stringify as toYaml } from "yaml";

/** The repository root. */
export const REPO = path.resolve(__dirname, "..");

/** What a command printed and how it ended. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Options of {@link run}. */
export interface RunOptions {
  cwd: string;
  env: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed (empty when omitted). */
  stdin?: string;
  /** Killed after this long; 10 minutes unless told. */
  timeoutMs?: number;
  /** Every chunk of stdout and stderr as it arrives. */
  onOutput?: (text: string) => void;
}

/** Runs a command to its end and returns what it printed; never throws for a non-zero exit. */
export function run(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => {
      out.push(chunk);
      options.onOutput?.(chunk.toString("utf8"));
    });
    child.stderr.on("data", (chunk: Buffer) => {
      err.push(chunk);
      options.onOutput?.(chunk.toString("utf8"));
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 600_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${error.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        durationMs: Date.now() - started,
      });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.stdin ?? "");
  });
}

/**
 * Throws unless the Pulumi CLI is on PATH, naming how to get it. End-to-end tests call it first so
 * that a machine without the CLI fails them instead of skipping them.
 */
export async function requirePulumiCli(): Promise<string> {
  const res = await run("pulumi", ["version"], { cwd: REPO, env: process.env }).catch((e: unknown) => ({
    code: -1,
    stdout: "",
    stderr: String(e),
    durationMs: 0,
  }));
  if (res.code !== 0) {
    throw new Error(
      `the Pulumi CLI is not on PATH (${res.stderr.trim()}). Install it (https://www.pulumi.com/docs/iac/download-install/); ` +
        "on a machine without internet, `bash ../shared/pulumi/install.sh` installs a toolchain built from source.",
    );
  }
  return res.stdout.trim();
}

/** Files of the program that a scratch copy needs; tests, benchmarks and CI files stay behind. */
function programFiles(): string[] {
  const listed = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: REPO, encoding: "utf8" }).split("\n");
  return listed.filter(
    (file) =>
      file !== "" &&
      fs.existsSync(path.join(REPO, file)) &&
      !/^(test|support|bench-results|\.github|\.ci)\//.test(file) &&
      !/^Pulumi\.[^.]+\.yaml$/.test(file),
  );
}

/** Options of {@link scratchProject}. */
export interface ScratchOptions {
  /** Project name; a unique `e2e-<hex>` unless told. Docker resources are named after it. */
  project?: string;
  /** Keep the repository's `Pulumi.<stack>.yaml` files (renamed to the project's namespace). */
  withStackFiles?: boolean;
}

/** A scratch copy of the program with its own state backend, passphrase and Pulumi home. */
export interface ScratchProject {
  readonly dir: string;
  readonly project: string;
  /** The file backend's URL (`file://<dir>/.pulumi-state`) and the passphrase file the quick start uses there. */
  readonly backendUrl: string;
  readonly passphraseFile: string;
  /** Environment without backend or passphrase: what a new user has. */
  readonly userEnv: NodeJS.ProcessEnv;
  /** `userEnv` plus the backend and passphrase. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs `pulumi <args>` in the project with {@link env}. */
  pulumi(args: readonly string[], options?: Partial<RunOptions>): Promise<RunResult>;
  /** Runs an npm script of the project (`up`, `rotate`, `rollback`) with `env` (default {@link env}). */
  npm(script: string, args: readonly string[], options?: Partial<RunOptions>): Promise<RunResult>;
  /** The Automation API's view of one stack of this project. */
  stack(name: string): Promise<Stack>;
  /** Writes `Pulumi.<stack>.yaml` with these project config values (keys without the namespace). */
  writeStackFile(stack: string, config: Record<string, unknown>): void;
  /** Stores a secret config value the way users do: on `pulumi config set`'s stdin. */
  setSecret(stack: string, keyPath: string, value: string): Promise<void>;
  /** Sets a plain config value (`--path`). */
  setConfig(stack: string, keyPath: string, value: string): Promise<void>;
  /** The raw state file of a stack, as the backend stores it. */
  stateFile(stack: string): string;
  /** Deletes the copy, its state and its Pulumi home. */
  cleanup(): void;
}

/** The Pulumi home whose plugin cache the scratch homes share (the Docker provider lives there). */
function pluginsDir(): string {
  return path.join(process.env.PULUMI_HOME ?? path.join(os.homedir(), ".pulumi"), "plugins");
}

/** Copies the program into a new directory under the system temp dir; see {@link ScratchProject}. */
export function scratchProject(options: ScratchOptions = {}): ScratchProject {
  const project = options.project ?? `e2e-${randomBytes(3).toString("hex")}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${project}-`));
  for (const file of programFiles()) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.copyFileSync(path.join(REPO, file), path.join(dir, file));
  }
  fs.symlinkSync(path.join(REPO, "node_modules"), path.join(dir, "node_modules"));
  // The policy pack is a package of its own (policy/): its dependencies too, when installed.
  if (fs.existsSync(path.join(REPO, "policy", "node_modules"))) fs.symlinkSync(path.join(REPO, "policy", "node_modules"), path.join(dir, "policy", "node_modules"));
  const settings = parseYaml(fs.readFileSync(path.join(dir, "Pulumi.yaml"), "utf8")) as Record<string, unknown>;
  fs.writeFileSync(path.join(dir, "Pulumi.yaml"), toYaml({ ...settings, name: project }));
  if (options.withStackFiles === true) {
    for (const file of fs.readdirSync(REPO).filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f))) {
      const doc = parseYaml(fs.readFileSync(path.join(REPO, file), "utf8")) as { config?: Record<string, unknown> };
      const config = Object.fromEntries(Object.entries(doc.config ?? {}).map(([k, v]) => [k.replace(/^backend-delivery:/, `${project}:`), v]));
      fs.writeFileSync(path.join(dir, file), toYaml({ config }));
    }
  }

  const home = path.join(dir, ".pulumi-home");
  fs.mkdirSync(home);
  // One plugin cache for every scratch home: a CLI that downloads plugins does so once.
  fs.mkdirSync(pluginsDir(), { recursive: true });
  fs.symlinkSync(pluginsDir(), path.join(home, "plugins"));
  const userEnv: NodeJS.ProcessEnv = { ...process.env, PULUMI_HOME: home, PULUMI_SKIP_UPDATE_CHECK: "true", FORCE_COLOR: "0", NO_COLOR: "1" };
  for (const name of ["PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE", "PULUMI_ACCESS_TOKEN"]) delete userEnv[name];
  const stateDir = path.join(dir, ".pulumi-state");
  const backendUrl = `file://${stateDir}`;
  const passphraseFile = path.join(stateDir, "passphrase");
  const env: NodeJS.ProcessEnv = { ...userEnv, PULUMI_BACKEND_URL: backendUrl, PULUMI_CONFIG_PASSPHRASE_FILE: passphraseFile };

  const pulumi = (args: readonly string[], opts: Partial<RunOptions> = {}) =>
    run("pulumi", [...args, "--non-interactive"], { cwd: dir, env, ...opts });
  const mustPulumi = async (args: readonly string[], stdin?: string): Promise<void> => {
    const res = await pulumi(args, stdin === undefined ? {} : { stdin });
    if (res.code !== 0) throw new Error(`pulumi ${args.slice(0, 4).join(" ")} ... exited ${res.code}: ${res.stderr.trim()}`);
  };

  return {
    dir,
    project,
    backendUrl,
    passphraseFile,
    userEnv,
    env,
    pulumi,
    npm: (script, args, opts = {}) => run("npm", ["run", "--silent", script, "--", ...args], { cwd: dir, env, ...opts }),
    stack: (name) => LocalWorkspace.createOrSelectStack({ stackName: name, workDir: dir }, { pulumiHome: home, envVars: stringEnv(env) }),
    writeStackFile: (stack, config) => {
      const namespaced = Object.fromEntries(Object.entries(config).map(([k, v]) => [k.includes(":") ? k : `${project}:${k}`, v]));
      fs.writeFileSync(path.join(dir, `Pulumi.${stack}.yaml`), toYaml({ config: namespaced }));
    },
    setSecret: (stack, keyPath, value) => mustPulumi(["config", "set", "--secret", "--path", keyPath, "--stack", stack], value),
    setConfig: (stack, keyPath, value) => mustPulumi(["config", "set", "--path", keyPath, value, "--stack", stack]),
    stateFile: (stack) => fs.readFileSync(path.join(stateDir, ".pulumi", "stacks", project, `${stack}.json`), "utf8"),
    // KEEP_SCRATCH=1 keeps the copy (state, preview documents) for a look after a failure.
    cleanup: () => (process.env.KEEP_SCRATCH === "1" ? undefined : fs.rmSync(dir, { recursive: true, force: true })),
  };
}

/**
 * A `pulumi preview --json` document as a committed fixture holds it: the given secret values and
 * this machine's paths redacted, the scratch project's name back to the repository's, and a dynamic
 * resource's serialized provider (code, not a change anyone reviews) left out.
 */
export function fixtureText(json: string, p: ScratchProject, secrets: readonly string[]): string {
  let text = json;
  for (const value of secrets) text = text.split(value).join("[secret]");
  text = text.split(p.dir).join("/project").split(p.project).join("backend-delivery").split(REPO).join("/repository");
  return `${JSON.stringify(JSON.parse(text, (key, value: unknown) => (key === "__provider" ? "[provider]" : value)), null, 2)}\n`;
}

function stringEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}
