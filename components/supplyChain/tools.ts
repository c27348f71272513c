/**
 * How the program runs Sigstore's `cosign` and Anchore's `syft`: as child processes found on PATH,
 * with nothing secret on their command lines. Registry credentials go into a Docker config file of
 * a private folder (mode 0700, the file 0600) that is removed when the tool exits; a signing key and
 * its password go into the child's environment only (`--key env://COSIGN_PRIVATE_KEY`,
 * `COSIGN_PASSWORD`); the child inherits none of this process's other variables but the few a tool
 * needs to run (PATH, HOME, proxies, CA settings). Whatever a tool prints is redacted of the values
 * it was given before anyone sees it.
 *
 * The registry's TLS is checked, never turned off: both tools trust what the Docker engine on this
 * machine trusts for that registry, its CA in `/etc/docker/certs.d/<server>/ca.crt` when there is one
 * (https://docs.docker.com/engine/security/certificates/), else the system's CAs.
 *
 * The signing resource's dynamic provider carries these functions into its own process (Pulumi
 * serializes them): Node globals and `require` only, no module-level objects.
 */
import type { RegistryLogin } from "../docker/preflight";
import { redact } from "../redact";

/** The two tools; their pinned versions and how to install them are in {@link installHint}. */
export type SupplyChainTool = "cosign" | "syft";

/** What a tool printed and how it ended. */
export interface ToolResult {
  code: number;
  stdout: string;
  /** Redacted of every value the run was given. */
  stderr: string;
}

/** Options of {@link runTool}. */
export interface ToolOptions {
  /** Extra environment of the child (a key, its password): never argv. */
  env?: Record<string, string>;
  /** Registry to log in to, through a Docker config file of the run's private folder. */
  registry?: RegistryLogin;
  /** Files to write into the private folder first (mode 0600), by name; `{dir}` in `args` names the folder. */
  files?: Record<string, string>;
  /** Values to redact from what the tool prints, besides the registry password and `env`'s values. */
  secrets?: readonly string[];
  /** Killed after this long; 3 minutes unless told. */
  timeoutMs?: number;
  /** Reads files the tool wrote into the private folder before it is removed, by name. */
  collect?: readonly string[];
}

/** What {@link runTool} returns: the result and the contents of the files asked for. */
export interface ToolRun extends ToolResult {
  files: Record<string, string>;
}

/** The pinned version of each tool and the command that installs it (Go 1.25 or newer). */
export function installHint(tool: SupplyChainTool): string {
  const pins = {
    cosign: "go install github.com/sigstore/cosign/v3/cmd/cosign@v3.1.3",
    syft: "go install github.com/anchore/syft/cmd/syft@v1.57.1",
  };
  return `install ${tool} and put it on PATH: \`${pins[tool]}\` (or ${tool === "cosign" ? "https://docs.sigstore.dev/cosign/system_config/installation/" : "https://github.com/anchore/syft#installation"}); bash scripts/install-supply-chain-tools.sh installs both`;
}

/** The CA the Docker engine on this machine trusts for `server`, when it has one of its own. */
export function registryCaFile(server: string): string | undefined {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require("node:fs") as typeof import("node:fs");
  const file = `/etc/docker/certs.d/${server}/ca.crt`;
  return fs.existsSync(file) ? file : undefined;
}

/** cosign's flags that make it trust {@link registryCaFile} for `server`; none for a registry with a public CA. */
export function cosignRegistryFlags(server: string): string[] {
  const ca = registryCaFile(server);
  return ca === undefined ? [] : ["--registry-cacert", ca];
}

/**
 * Runs `tool args...` to its end in a private folder of its own, removed afterwards. Rejects when the
 * tool is not installed (naming how to install it) or runs past its time; a non-zero exit is
 * returned, not thrown, so the caller can say what it means.
 */
export async function runTool(tool: SupplyChainTool, args: readonly string[], options: ToolOptions = {}): Promise<ToolRun> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const fs = require("node:fs") as typeof import("node:fs");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const os = require("node:os") as typeof import("node:os");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const path = require("node:path") as typeof import("node:path");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawn } = require("node:child_process") as typeof import("node:child_process");

  const secrets = [...(options.secrets ?? []), ...Object.values(options.env ?? {}), ...(options.registry ? [options.registry.password] : [])];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `backend-delivery-${tool}-`));
  try {
    fs.chmodSync(dir, 0o700);
    const env: Record<string, string> = {};
    for (const name of ["PATH", "HOME", "TMPDIR", "LANG", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR"]) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    // Offline by default: no update check, no telemetry.
    Object.assign(env, { SYFT_CHECK_FOR_APP_UPDATE: "false", TMPDIR: dir }, options.env);
    if (options.registry !== undefined) {
      const dockerDir = path.join(dir, "docker");
      fs.mkdirSync(dockerDir, { mode: 0o700 });
      const auth = Buffer.from(`${options.registry.username}:${options.registry.password}`).toString("base64");
      fs.writeFileSync(path.join(dockerDir, "config.json"), JSON.stringify({ auths: { [options.registry.server]: { auth } } }), { mode: 0o600 });
      env.DOCKER_CONFIG = dockerDir;
      const ca = registryCaFile(options.registry.server);
      if (ca !== undefined) env.SYFT_REGISTRY_CA_CERT = ca;
    }
    for (const [name, content] of Object.entries(options.files ?? {})) fs.writeFileSync(path.join(dir, name), content, { mode: 0o600 });
    const argv = args.map((arg) => arg.split("{dir}").join(dir));

    const result = await new Promise<ToolResult>((resolve, reject) => {
      const child = spawn(tool, argv, { cwd: dir, env, stdio: ["ignore", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (chunk: Buffer) => out.push(chunk));
      child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
      const timeoutMs = options.timeoutMs ?? 180_000;
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      child.on("error", (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(new Error(error.code === "ENOENT" ? `${tool} is not installed: ${installHint(tool)}` : `cannot run ${tool}: ${error.message}`));
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        const stderr = redact(Buffer.concat(err).toString("utf8"), secrets);
        if (signal === "SIGKILL") reject(new Error(`${tool} ${argv[0] ?? ""} did not finish within ${Math.round(timeoutMs / 1000)} s: ${stderr.trim().slice(-300)}`));
        else resolve({ code: code ?? 1, stdout: Buffer.concat(out).toString("utf8"), stderr });
      });
    });
    const files: Record<string, string> = {};
    for (const name of options.collect ?? []) {
      const file = path.join(dir, name);
      if (fs.existsSync(file)) files[name] = fs.readFileSync(file, "utf8");
    }
    return { ...result, files };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The last meaningful line a tool printed on stderr (cosign's `Error: ...`), without its deprecation notes. */
export function toolError(result: ToolResult): string {
  const lines = result.stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !/has been deprecated|is deprecated|^WARNING: Skipping tlog/.test(l));
  const error = lines.find((l) => l.startsWith("Error: ")) ?? lines[lines.length - 1] ?? `exit code ${result.code}`;
  return error.replace(/^Error: /, "").slice(0, 500);
}
