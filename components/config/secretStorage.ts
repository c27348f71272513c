/**
 * Which config values are stored encrypted. The engine hands the program every value in plain, so
 * the program reads the stack settings file (`Pulumi.<stack>.yaml`) to tell `secure:` leaves from
 * plain ones; the SDK's own secret flag covers config that has no stack file.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";

/** What the stack settings file and the SDK say about which values are stored encrypted. */
export interface SecretSources {
  /** Parsed `Pulumi.<stack>.yaml`, or undefined when there is none. */
  stackFile?: unknown;
  /** Whether the SDK reports this full key (`<project>:<key>`) as secret. */
  isSdkSecret: (fullKey: string) => boolean;
}

function isSecureLeaf(node: unknown): boolean {
  return typeof node === "object" && node !== null && !Array.isArray(node) && "secure" in node;
}

/**
 * Whether the value at `segments` is stored encrypted. The stack file is authoritative where it
 * records the leaf, because the SDK marks a whole object secret as soon as any one leaf is, so it
 * alone would let a plaintext sibling through; the SDK covers config that has no stack file.
 */
export function isStoredEncrypted(project: string, segments: readonly string[], sources: SecretSources): boolean {
  const fileConfig = (sources.stackFile as { config?: Record<string, unknown> } | undefined)?.config;
  let node: unknown = fileConfig?.[`${project}:${segments[0]}`];
  if (node !== undefined) {
    for (const segment of segments.slice(1)) {
      if (isSecureLeaf(node)) return true;
      if (typeof node !== "object" || node === null) return false;
      node = (node as Record<string, unknown>)[segment];
      if (node === undefined) break;
    }
    if (node !== undefined) return isSecureLeaf(node);
  }
  return sources.isSdkSecret(`${project}:${segments[0]}`);
}

/** Where the stack settings file is read from; `BACKEND_DELIVERY_STACK_FILE` overrides it. */
export function stackFilePath(stack: string): string {
  return process.env.BACKEND_DELIVERY_STACK_FILE ?? path.resolve(__dirname, "..", "..", `Pulumi.${stack}.yaml`);
}

/** The parsed stack file, or undefined without one; a missing file named explicitly is an error. */
export function readStackFile(file: string, explicit: boolean): unknown {
  if (!fs.existsSync(file)) {
    if (explicit) {
      throw new Error(`BACKEND_DELIVERY_STACK_FILE points to ${file}, which does not exist; fix or unset it`);
    }
    return undefined;
  }
  return parseYaml(fs.readFileSync(file, "utf8"));
}
