/**
 * The dependency changes of the promotion a prod preview decided: the verified SBOM of the image it
 * would run against that of the image prod runs now, both read from the registry with prod's
 * credentials and public key (`--sbom-config`, prod's `pulumi config --show-secrets --json`). The
 * reader of the registry is passed in, so the rules are tested without one.
 */
import { z } from "zod";
import type { RegistryLogin } from "../../../components/docker/preflight";
import type { SbomRead } from "../../../components/supplyChain/verify";
import type { Verdict } from "./stackSummary";
import { type DependencyChanges, diffSboms } from "./sbomDiff";

/** Where prod's images and their SBOMs are, and the key they are verified with. */
export interface SbomSource {
  login: RegistryLogin;
  publicKey: string;
}

/** Reads one image's verified SBOM (components/supplyChain/verify.ts `readSbom`). */
export type ReadSbom = (imageRef: string, source: SbomSource) => Promise<SbomRead>;

const Entry = z.looseObject({ value: z.string().optional(), objectValue: z.unknown().optional() });

/**
 * Prod's registry, password and public key from its `pulumi config --show-secrets --json`; undefined
 * when prod has no registry (its images are local and unsigned).
 */
export function sbomSourceFromConfigJson(json: string, project: string): SbomSource | undefined {
  const raw = z.record(z.string(), Entry).parse(JSON.parse(json));
  const object = (key: string): Record<string, unknown> | undefined => {
    const entry = raw[`${project}:${key}`];
    const value = entry?.objectValue ?? (entry?.value === undefined ? undefined : JSON.parse(entry.value));
    return value !== null && typeof value === "object" ? (value as Record<string, unknown>) : undefined;
  };
  const registry = object("image")?.registry as { server?: unknown; username?: unknown } | undefined;
  const password = raw[`${project}:registryPassword`]?.value;
  const publicKey = (object("promotion")?.signing as { publicKey?: unknown } | undefined)?.publicKey;
  if (registry === undefined) return undefined;
  if (typeof registry.server !== "string" || typeof registry.username !== "string" || password === undefined || typeof publicKey !== "string") {
    throw new Error("the --sbom-config file holds image.registry but not its username, registryPassword and promotion.signing.publicKey: write it with `pulumi config --show-secrets --json --stack prod`");
  }
  return { login: { server: registry.server, username: registry.username, password }, publicKey };
}

const PINNED = /^[^\s@]+@sha256:[0-9a-f]{64}$/;

/** What the comment says about the dependencies of the promotion `verdict` names, or undefined when it names no image. */
export async function dependencyChanges(verdict: Verdict | undefined, source: SbomSource | undefined, read: ReadSbom): Promise<DependencyChanges | undefined> {
  if (verdict === undefined || "undecided" in verdict) return undefined;
  const candidate = verdict.imageRef;
  if (candidate === undefined) return undefined;
  const current = verdict.currentImageRef;
  const base = { candidate, ...(current === undefined ? {} : { current }) };
  if (!PINNED.test(candidate)) return { ...base, problem: "no registry: the image stays on one Docker host, unsigned and without an SBOM" };
  if (source === undefined) return { ...base, problem: "the comment was not given prod's registry (--sbom-config) to read the SBOMs from" };
  const [next, now] = await Promise.all([read(candidate, source), current !== undefined && PINNED.test(current) ? read(current, source) : undefined]);
  if (!next.ok) return { ...base, problem: `the candidate has no verified SBOM: ${next.problem.problem}` };
  if (current !== undefined && now === undefined) return { ...base, problem: `prod's current image ${current} is not in a registry, so it has no SBOM to compare with` };
  if (now !== undefined && !now.ok) return { ...base, problem: `prod's current image has no verified SBOM (${now.problem.problem}): nothing to compare with` };
  return { ...base, diff: diffSboms(now?.ok ? now.packages : [], next.packages) };
}
