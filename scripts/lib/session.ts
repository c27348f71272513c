/**
 * Which state backend and passphrase a helper's run uses: the user's own when they have one, else
 * the project-local file backend in `.pulumi-state/` with a generated passphrase; and the Pulumi
 * CLI wired to them through its environment, so the user's global login is never changed.
 */
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { CliError, ExitCode } from "./cli";
import { PulumiCli } from "./pulumiCli";

/** Directory name of the project-local file state backend, relative to the project directory. */
export const LOCAL_STATE_DIR = ".pulumi-state";
/** File inside {@link LOCAL_STATE_DIR} holding the generated local passphrase. */
export const LOCAL_PASSPHRASE_FILE = "passphrase";

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
