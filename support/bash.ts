/**
 * Runs a bash script the way a GitHub Actions `run:` step does (`bash --noprofile --norc -eo pipefail`),
 * with only the environment given: tests of the workflows' own step scripts and CI helpers.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** What the script printed and how it ended. */
export interface BashResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The repository root: steps run from the checkout. */
export const REPO_ROOT = path.resolve(__dirname, "..");

/**
 * Runs `script` in `cwd` (default: the repository root) with `env` and a PATH of `binDirs`, Node's
 * own folder and the system's; HOME must be among `env` so that `~` never means the real one.
 */
export function runBash(
  script: string,
  opts: { env: NodeJS.ProcessEnv & { HOME: string }; binDirs?: string[]; cwd?: string; stdin?: string },
): BashResult {
  const PATH = [...(opts.binDirs ?? []), path.dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"].join(":");
  const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", script], {
    cwd: opts.cwd ?? REPO_ROOT,
    env: { PATH, ...opts.env },
    input: opts.stdin ?? "",
    encoding: "utf8",
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A fresh ed25519 key pair without a passphrase (or with `passphrase`), in a scratch folder. */
export function makeSshKey(passphrase = ""): { privateKey: string; publicKey: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-ssh-key-"));
  const file = path.join(dir, "key");
  const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", passphrase, "-C", "test", "-f", file], { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error(`ssh-keygen failed: ${r.error?.message ?? r.stderr}`);
  const privateKey = fs.readFileSync(file, "utf8");
  const publicKey = fs.readFileSync(`${file}.pub`, "utf8").trim();
  return { privateKey, publicKey, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
