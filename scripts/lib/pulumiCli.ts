/**
 * Running the Pulumi CLI from the project's command-line helpers: where the project lives, how a
 * command runs, and how a value reaches `pulumi` (always on stdin, never in argv, where `ps` and
 * shell history would show it). Which backend and passphrase a run uses is ./session.ts.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { redact } from "../../components/redact";
import { CliError, ExitCode } from "./cli";

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

/** Stores `value` as a plain config leaf, on pulumi's stdin (a multi-line PEM travels whole). */
export async function setPlain(cli: PulumiCli, stack: string, pathKey: string, value: string): Promise<void> {
  const res = await cli.capture(["config", "set", "--path", pathKey, "--stack", stack, "--non-interactive"], value);
  if (res.code !== 0) throw pulumiFailure(`pulumi config set --path ${pathKey}`, res);
}

/** An error carrying pulumi's own message, redacted: the listed values and anything shaped like a credential. */
export function pulumiFailure(what: string, res: PulumiResult, hide: readonly string[] = []): CliError {
  const detail = redact(res.stderr.trim() || res.stdout.trim(), hide);
  return new CliError(`\`${what}\` failed (exit ${res.code})${detail ? `:\n${detail}` : "."}`, ExitCode.pulumiFailed);
}
