/**
 * Running the Pulumi CLI from the project's command-line helpers: where the project lives, which
 * state backend and passphrase a run uses, and how a value reaches `pulumi` (always on stdin, never
 * in argv, where `ps` and shell history would show it).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { redact } from "../../components/redact";
import { CliError, ExitCode } from "./cli";

/** Directory name of the project-local file state backend, relative to the project directory. */
export const LOCAL_STATE_DIR = ".pulumi-state";
/** File inside {@link LOCAL_STATE_DIR} holding the generated local passphrase. */
export const LOCAL_PASSPHRASE_FILE = "passphrase";

/**
 * The project directory: `BACKEND_DELIVERY_PROJECT_DIR` when set (tests point it at a scratch copy so
 * they never touch the real `.pulumi-state/`), else the repository root this file lives in.
 */
export function projectDir(env: NodeJS.ProcessEnv = process.env): string {
  const override = env.BACKEND_DELIVERY_PROJECT_DIR;
  const dir = override !== undefined && override !== "" ? path.resolve(override) : path.resolve(__dirname, "..", "..");
  if (!fs.existsSync(path.join(dir, "Pulumi.yaml"))) {
    throw new CliError(
      `No Pulumi.yaml in ${dir}. Run this from the backend-delivery repository ` +
        "(or point BACKEND_DELIVERY_PROJECT_DIR at it).",
      ExitCode.usage,
    );
  }
  return dir;
}

/** What one `pulumi` invocation returned. */
export interface PulumiResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `pulumi` in the project directory with the session's environment. */
export class PulumiCli {
  constructor(
    readonly cwd: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** A copy that runs with `extra` added to the environment. */
  withEnv(extra: NodeJS.ProcessEnv): PulumiCli {
    return new PulumiCli(this.cwd, { ...this.env, ...extra });
  }

  /**
   * Runs `pulumi args...`, capturing stdout and stderr. `stdin` (a secret value, for instance) is
   * written to the child's standard input and the pipe closed; without it stdin is empty, so
   * `pulumi` never waits on a prompt.
   */
  capture(args: readonly string[], stdin?: string): Promise<PulumiResult> {
    return new Promise((resolve, reject) => {
      const child = spawn("pulumi", args, { cwd: this.cwd, env: this.env, stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
      child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
      child.on("error", (e) => reject(spawnError(e)));
      child.on("close", (code, signal) =>
        resolve({
          code: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString("utf8"),
          stderr: Buffer.concat(err).toString("utf8"),
        }),
      );
      // EPIPE when pulumi exits before reading stdin is reported by its exit code, not here.
      child.stdin.on("error", () => undefined);
      child.stdin.end(stdin ?? "");
    });
  }

  /** Runs `pulumi args...` attached to this terminal (for `pulumi up`); resolves to its exit code. */
  interactive(args: readonly string[]): Promise<number> {
    return new Promise((resolve, reject) => {
      const child = spawn("pulumi", args, { cwd: this.cwd, env: this.env, stdio: "inherit" });
      child.on("error", (e) => reject(spawnError(e)));
      child.on("close", (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
  }
}

function spawnError(e: NodeJS.ErrnoException): Error {
  if (e.code === "ENOENT") {
    return new CliError(
      "The Pulumi CLI (`pulumi`) was not found on PATH. Install it (https://www.pulumi.com/docs/iac/download-install/) and retry.",
      ExitCode.refused,
    );
  }
  return e;
}

/** Which state backend a run uses, and why. */
export type Backend =
  | { kind: "user"; reason: "PULUMI_BACKEND_URL" | "logged-in"; url?: string }
  | { kind: "project-local"; url: string; dir: string };

/** Where the passphrase for the passphrase secrets provider comes from. */
export type Passphrase =
  | { kind: "user"; variable: "PULUMI_CONFIG_PASSPHRASE" | "PULUMI_CONFIG_PASSPHRASE_FILE" }
  | { kind: "project-local"; file: string; created: boolean }
  | { kind: "none" };

/** The backend and passphrase of one run, and the CLI wired to them. */
export interface Session {
  backend: Backend;
  passphrase: Passphrase;
  cli: PulumiCli;
}

function isSet(value: string | undefined): value is string {
  return value !== undefined && value !== "";
}

/**
 * Decides the state backend the way `pulumi` itself would, but falls back to the project-local file
 * backend instead of Pulumi Cloud: `PULUMI_BACKEND_URL`, else whatever `pulumi whoami` reports
 * (a `pulumi login`, or the project's own `backend.url`), else `.pulumi-state/`. The fallback is
 * passed as `PULUMI_BACKEND_URL` to each child, so the user's global login is never changed.
 */
export async function resolveBackend(cli: PulumiCli, dir: string): Promise<Backend> {
  if (isSet(cli.env.PULUMI_BACKEND_URL)) {
    return { kind: "user", reason: "PULUMI_BACKEND_URL", url: cli.env.PULUMI_BACKEND_URL };
  }
  let who = await cli.capture(["whoami", "--json", "--non-interactive"]);
  // CLIs older than `whoami --json` reject the flag; that says nothing about being logged in.
  if (who.code !== 0 && /unknown flag/i.test(who.stderr)) who = await cli.capture(["whoami", "--non-interactive"]);
  if (who.code === 0) {
    let url: string | undefined;
    try {
      const parsed: unknown = JSON.parse(who.stdout);
      if (parsed !== null && typeof parsed === "object" && typeof (parsed as { url?: unknown }).url === "string") {
        url = (parsed as { url: string }).url;
      }
    } catch {
      // Older CLIs print no JSON here; being logged in is what matters.
    }
    return { kind: "user", reason: "logged-in", url };
  }
  const stateDir = path.join(dir, LOCAL_STATE_DIR);
  return { kind: "project-local", url: `file://${stateDir}`, dir: stateDir };
}

/**
 * Creates `.pulumi-state/` (0700) with a `.gitignore` of its own, so neither state nor passphrase
 * can be committed even if the repository's ignore list changes.
 */
export function ensureLocalStateDir(stateDir: string): void {
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(stateDir, 0o700);
  const ignore = path.join(stateDir, ".gitignore");
  if (!fs.existsSync(ignore)) fs.writeFileSync(ignore, "*\n", { mode: 0o644 });
}

/**
 * The passphrase for stacks in the project-local backend: the user's own
 * `PULUMI_CONFIG_PASSPHRASE(_FILE)` when set, else `.pulumi-state/passphrase`, generated (0600) when
 * `create` allows it. A backend with existing state but no passphrase file is refused rather than
 * given a new passphrase that could not decrypt what is there.
 */
export function resolvePassphrase(env: NodeJS.ProcessEnv, backend: Backend, create: boolean): Passphrase {
  if (isSet(env.PULUMI_CONFIG_PASSPHRASE_FILE)) return { kind: "user", variable: "PULUMI_CONFIG_PASSPHRASE_FILE" };
  // An empty PULUMI_CONFIG_PASSPHRASE is a deliberate choice pulumi accepts; respect it too.
  if (env.PULUMI_CONFIG_PASSPHRASE !== undefined) return { kind: "user", variable: "PULUMI_CONFIG_PASSPHRASE" };
  // The user's own backend keeps its own secrets arrangement; a passphrase generated here would be
  // stored beside a checkout, not with their state.
  if (backend.kind !== "project-local") return { kind: "none" };

  const file = path.join(backend.dir, LOCAL_PASSPHRASE_FILE);
  if (fs.existsSync(file)) {
    const mode = fs.statSync(file).mode & 0o777;
    if ((mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
    return { kind: "project-local", file, created: false };
  }
  const hasState = fs.existsSync(path.join(backend.dir, ".pulumi"));
  if (hasState || !create) {
    throw new CliError(
      `${path.join(LOCAL_STATE_DIR, LOCAL_PASSPHRASE_FILE)} is missing` +
        (hasState ? `, but ${LOCAL_STATE_DIR}/ already holds stacks encrypted with it` : "") +
        ". Restore the file, or export PULUMI_CONFIG_PASSPHRASE_FILE (or PULUMI_CONFIG_PASSPHRASE) with the passphrase" +
        (hasState ? " those stacks were created with." : ", or run `npm run up -- <stack>` first."),
      ExitCode.refused,
    );
  }
  ensureLocalStateDir(backend.dir);
  // "wx": never overwrite a passphrase another run created a moment ago.
  fs.writeFileSync(file, randomBytes(32).toString("base64url"), { mode: 0o600, flag: "wx" });
  fs.chmodSync(file, 0o600);
  return { kind: "project-local", file, created: true };
}

/**
 * Resolves backend and passphrase and returns the CLI wired to them. `createLocal` lets the quick
 * start create `.pulumi-state/` and its passphrase; rotation only uses them when they exist.
 */
export async function openSession(dir: string, env: NodeJS.ProcessEnv, createLocal: boolean): Promise<Session> {
  const base = new PulumiCli(dir, { ...env, PULUMI_SKIP_UPDATE_CHECK: env.PULUMI_SKIP_UPDATE_CHECK ?? "true" });
  const backend = await resolveBackend(base, dir);
  let cli = base;
  if (backend.kind === "project-local") {
    if (!createLocal && !fs.existsSync(path.join(backend.dir, ".pulumi"))) {
      throw new CliError(
        "No Pulumi state backend: you are not logged in (`pulumi whoami` failed), PULUMI_BACKEND_URL is unset, " +
          `and there is no project-local state in ${LOCAL_STATE_DIR}/. Run \`npm run up -- <stack>\` first, ` +
          "or `pulumi login <backend-url>`.",
        ExitCode.refused,
      );
    }
    if (createLocal) ensureLocalStateDir(backend.dir);
    cli = cli.withEnv({ PULUMI_BACKEND_URL: backend.url });
  }
  const passphrase = resolvePassphrase(env, backend, createLocal);
  if (passphrase.kind === "project-local") cli = cli.withEnv({ PULUMI_CONFIG_PASSPHRASE_FILE: passphrase.file });
  return { backend, passphrase, cli };
}

/** One line for the user about where state and passphrase come from; never a passphrase. */
export function describeSession(session: Session, dir: string): string[] {
  const lines: string[] = [];
  const b = session.backend;
  if (b.kind === "project-local") {
    lines.push(`State backend: project-local ${path.relative(dir, b.dir) || "."}/ (${b.url}).`);
  } else if (b.reason === "PULUMI_BACKEND_URL") {
    lines.push(`State backend: yours, from PULUMI_BACKEND_URL (${b.url ?? ""}).`);
  } else {
    lines.push(`State backend: yours, from your Pulumi login${b.url ? ` (${b.url})` : ""}.`);
  }
  const p = session.passphrase;
  if (p.kind === "project-local") {
    const rel = path.relative(dir, p.file);
    lines.push(
      p.created
        ? `Generated a local passphrase in ${rel} (mode 0600). Keep it: it decrypts this backend's stack secrets.`
        : `Passphrase: ${rel}.`,
    );
    if (b.kind === "project-local") {
      lines.push(
        `To run pulumi yourself against this state: export PULUMI_BACKEND_URL=${b.url} PULUMI_CONFIG_PASSPHRASE_FILE=${p.file}`,
      );
    }
  } else if (p.kind === "user") {
    lines.push(`Passphrase: yours, from ${p.variable}.`);
  }
  return lines;
}

/** Does the backend hold `stack` for this project? (`pulumi stack ls --json`.) */
export async function stackExists(cli: PulumiCli, stack: string): Promise<boolean> {
  const res = await cli.capture(["stack", "ls", "--json", "--non-interactive"]);
  if (res.code !== 0) throw pulumiFailure("pulumi stack ls", res);
  let listed: unknown;
  try {
    listed = JSON.parse(res.stdout);
  } catch {
    throw new CliError("`pulumi stack ls --json` printed something that is not JSON; is `pulumi` the Pulumi CLI?", ExitCode.pulumiFailed);
  }
  if (!Array.isArray(listed)) return false;
  // Names are shown short ("staging") or qualified ("org/backend-delivery/staging") depending on the
  // backend and on -Q; compare both ways.
  return listed.some((entry: unknown) => {
    const name = entry !== null && typeof entry === "object" ? (entry as { name?: unknown }).name : undefined;
    return typeof name === "string" && (name === stack || name.endsWith(`/${stack}`) || stack.endsWith(`/${name}`));
  });
}

/** The state of one config key as `pulumi config get --json` reports it. */
export type ConfigState = { set: false } | { set: true; secret: boolean; value?: string };

/**
 * Reads one key of `stack` (with `--path` for `a.b` keys). For a secret, pulumi decrypts the value
 * into our stdout pipe; only its presence and the `secret` flag are kept, the value is dropped here.
 */
export async function configState(cli: PulumiCli, stack: string, key: string, usePath: boolean): Promise<ConfigState> {
  const args = ["config", "get", ...(usePath ? ["--path"] : []), key, "--stack", stack, "--json", "--non-interactive"];
  const res = await cli.capture(args);
  if (res.code !== 0) {
    if (/not found/i.test(res.stderr)) return { set: false };
    throw pulumiFailure(`pulumi config get ${usePath ? "--path " : ""}${key}`, res);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(res.stdout);
  } catch {
    throw new CliError(`\`pulumi config get ${key} --json\` printed something that is not JSON.`, ExitCode.pulumiFailed);
  }
  const doc = parsed !== null && typeof parsed === "object" ? (parsed as { secret?: unknown; value?: unknown }) : {};
  const secret = doc.secret === true;
  return secret
    ? { set: true, secret: true }
    : { set: true, secret: false, value: typeof doc.value === "string" ? doc.value : undefined };
}

/** Stores `value` as an encrypted config leaf; the value goes to pulumi's stdin only. */
export async function setSecret(cli: PulumiCli, stack: string, pathKey: string, value: string): Promise<void> {
  const res = await cli.capture(
    ["config", "set", "--secret", "--path", pathKey, "--stack", stack, "--non-interactive"],
    value,
  );
  if (res.code !== 0) throw pulumiFailure(`pulumi config set --secret --path ${pathKey}`, res, [value]);
}

/** An error carrying pulumi's own message, redacted: the listed values and anything shaped like a credential. */
export function pulumiFailure(what: string, res: PulumiResult, hide: readonly string[] = []): CliError {
  const detail = redact(res.stderr.trim() || res.stdout.trim(), hide);
  return new CliError(`\`${what}\` failed (exit ${res.code})${detail ? `:\n${detail}` : "."}`, ExitCode.pulumiFailed);
}
