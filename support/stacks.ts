/**
 * Staging and prod in a scratch project (support/engine.ts) set up the way a team sets them up for
 * delivery through a registry: each stack's file, the stack, its secrets on `pulumi config set`'s
 * stdin, and staging's cosign key.
 */
import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import { LOCAL_PROXY_IMAGE, LOCAL_PYTHON_BASE } from "./docker";
import type { ScratchProject } from "./engine";
import type { CosignKeys } from "./signingKeys";

/** What {@link initRegistryStacks} stores besides the stack files. */
export interface RegistryStackSecrets {
  /** `secrets.DATABASE_URL` of each stack. */
  databaseUrl: (stack: "staging" | "prod") => string;
  registryPassword: string;
  /** Staging signs with it; prod's stack file names its public half. */
  keys: CosignKeys;
}

/** Creates both stacks; returns the generated `SECRET_KEY`s, which no output or log may show. */
export async function initRegistryStacks(p: ScratchProject, files: Record<"staging" | "prod", Record<string, unknown>>, secrets: RegistryStackSecrets): Promise<string[]> {
  const generated: string[] = [];
  for (const stack of ["staging", "prod"] as const) {
    p.writeStackFile(stack, files[stack]);
    const init = await p.pulumi(["stack", "init", stack]);
    expect(init.code, init.stderr).toBe(0);
    // `stack init` may rewrite the file; the settings are what the test said.
    p.writeStackFile(stack, files[stack]);
    const secretKey = randomBytes(32).toString("base64url");
    generated.push(secretKey);
    await p.setSecret(stack, "secrets.DATABASE_URL", secrets.databaseUrl(stack));
    await p.setSecret(stack, "secrets.SECRET_KEY", secretKey);
    await p.setSecret(stack, "registryPassword", secrets.registryPassword);
    if (stack === "staging") {
      await p.setSecret(stack, "cosignPrivateKey", secrets.keys.privateKey);
      await p.setSecret(stack, "cosignPassword", secrets.keys.password);
    }
  }
  return generated;
}

/** Where a registry stack's images go, and what prod verifies them with. */
export interface RegistryStackFile {
  hostPort: number;
  /** The scratch project: prod promotes from its staging. */
  project: string;
  repository: string;
  registry: { server: string; username: string };
  publicKey: string;
  /** Further keys, e.g. `docker:host`. */
  extra?: Record<string, unknown>;
}

/** A stack's settings for delivery through `registry`: local base and proxy images, prod verifying with `publicKey`. */
export function registryStackFile(stack: "staging" | "prod", file: RegistryStackFile): Record<string, unknown> {
  return {
    environment: stack,
    service: { hostPort: file.hostPort },
    image: { ...(stack === "staging" ? { baseImage: LOCAL_PYTHON_BASE } : {}), name: file.repository, registry: { server: file.registry.server, username: file.registry.username } },
    // A prod stack must choose how TLS ends: in front, here, so its proxy serves plain HTTP as before.
    proxy: { image: LOCAL_PROXY_IMAGE, ...(stack === "prod" ? { tls: { mode: "upstream" } } : {}) },
    ...(stack === "prod" ? { promotion: { fromStack: `organization/${file.project}/staging`, signing: { publicKey: file.publicKey } } } : {}),
    ...file.extra,
  };
}
