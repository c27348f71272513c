/**
 * Build metadata baked into the image as build arguments (`APP_VERSION`, `GIT_SHA`). Neither is a
 * secret; the backend reports both on `/version`.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

/** Version and revision of the code being built. */
export interface BuildInfo {
  appVersion: string;
  gitSha: string;
}

/** `version` from the `[project]` table of a pyproject.toml, or undefined. */
export function pyprojectVersion(text: string): string | undefined {
  const project = /^\[project\]\s*$([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text)?.[1] ?? "";
  return /^version\s*=\s*"([^"]+)"/m.exec(project)?.[1];
}

function gitHead(cwd: string): string | undefined {
  try {
    const sha = execFileSync("git", ["rev-parse", "HEAD"], { cwd, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
    return /^[0-9a-f]{40}$/.test(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The environment wins (CI sets `GIT_SHA`/`GITHUB_SHA` and may set `APP_VERSION`); otherwise the
 * backend's pyproject version and the checkout's HEAD.
 */
export function resolveBuildInfo(context: string, env: NodeJS.ProcessEnv = process.env): BuildInfo {
  const pyproject = path.join(context, "pyproject.toml");
  const version = fs.existsSync(pyproject) ? pyprojectVersion(fs.readFileSync(pyproject, "utf8")) : undefined;
  return {
    appVersion: env.APP_VERSION ?? version ?? "0.0.0",
    gitSha: env.GIT_SHA ?? env.GITHUB_SHA ?? gitHead(context) ?? "unknown",
  };
}
