/**
 * What an attacker (or an accident) does to the signatures in a registry, for the tests of the
 * gate's refusals: a signature copied from another image, an SBOM attestation altered after it was
 * signed, a signature deleted. Each works on the classic cosign tags (`sha256-<hex>.sig`/`.att`)
 * through the registry's HTTP API. And a PATH of tool wrappers that record every command line the
 * program gives cosign and syft, to prove that no key or password is ever on one.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { execFileSync } from "node:child_process";
import type { Registry } from "./registry";

/** The cosign tag that holds the signatures (`sig`) or attestations (`att`) of `digest`. */
export function cosignTag(digest: string, kind: "sig" | "att"): string {
  return `${digest.replace(":", "-")}.${kind}`;
}

/** Stores the signature manifest of image `from` as that of image `to`: a signature for another digest. */
export async function copySignature(registry: Registry, repository: string, from: string, to: string): Promise<void> {
  const manifest = await registry.getManifest(repository, cosignTag(from, "sig"));
  await registry.putManifest(repository, cosignTag(to, "sig"), manifest.mediaType, manifest.body);
}

/**
 * Alters the SBOM of every attestation of `digest` after it was signed: `mutate` edits each in-toto
 * statement, the envelopes keep their signatures, and the manifest points at the altered layers.
 */
export async function tamperAttestation(registry: Registry, repository: string, digest: string, mutate: (statement: { predicate: { packages: unknown[] } }) => void): Promise<void> {
  const tag = cosignTag(digest, "att");
  const manifest = JSON.parse((await registry.getManifest(repository, tag)).body.toString("utf8")) as { mediaType: string; layers: { digest: string; size: number }[] };
  if (manifest.layers.length === 0) throw new Error(`${repository}:${tag} has no layer`);
  for (const layer of manifest.layers) {
    const envelope = JSON.parse((await registry.getBlob(repository, layer.digest)).toString("utf8")) as { payload: string };
    const statement = JSON.parse(Buffer.from(envelope.payload, "base64").toString("utf8")) as { predicate: { packages: unknown[] } };
    mutate(statement);
    envelope.payload = Buffer.from(JSON.stringify(statement)).toString("base64");
    const content = Buffer.from(JSON.stringify(envelope));
    layer.digest = await registry.putBlob(repository, content);
    layer.size = content.length;
  }
  await registry.putManifest(repository, tag, manifest.mediaType, Buffer.from(JSON.stringify(manifest)));
}

/** Removes every signature of `digest` from the registry: the image is unsigned again. */
export async function deleteSignature(registry: Registry, repository: string, digest: string): Promise<void> {
  const tag = cosignTag(digest, "sig");
  const manifestDigest = await registry.manifestDigest(repository, tag);
  if (manifestDigest === undefined) throw new Error(`${repository}:${tag} does not exist`);
  await registry.deleteManifest(repository, manifestDigest);
}

/** A PATH whose `cosign` and `syft` record their arguments, then run the real tools. */
export interface RecordingTools {
  /** PATH with the wrappers first. */
  path: string;
  /** Every command line so far, one per call: the tool, then its arguments. */
  calls(): string[][];
  /** Every environment variable name the tools were given, over all calls. */
  envNames(): string[];
  remove(): void;
}

/** Wraps the cosign and syft on PATH; see {@link RecordingTools}. */
export function recordingTools(): RecordingTools {
  const dir = mkdtempSync(join(tmpdir(), "tool-wrappers-"));
  const log = join(dir, "calls.jsonl");
  const names = join(dir, "env-names.txt");
  writeFileSync(log, "");
  writeFileSync(names, "");
  mkdirSync(join(dir, "bin"));
  for (const tool of ["cosign", "syft"]) {
    const real = execFileSync("bash", ["-c", `command -v ${tool}`], { encoding: "utf8" }).trim();
    if (real === "") throw new Error(`${tool} is not on PATH: bash scripts/install-supply-chain-tools.sh`);
    const wrapper = join(dir, "bin", tool);
    // Arguments as JSON (node, so quoting is exact); of the environment only the names.
    writeFileSync(
      wrapper,
      `#!/usr/bin/env bash\nnode -e 'process.stdout.write(JSON.stringify(process.argv.slice(1))+"\\n")' ${tool} "$@" >> ${JSON.stringify(log)}\n` +
        `env | cut -d= -f1 >> ${JSON.stringify(names)}\nexec ${JSON.stringify(real)} "$@"\n`,
    );
    chmodSync(wrapper, 0o755);
  }
  return {
    path: `${join(dir, "bin")}${delimiter}${process.env.PATH ?? ""}`,
    calls: () => readFileSync(log, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as string[]),
    envNames: () => [...new Set(readFileSync(names, "utf8").split("\n").filter((l) => l !== ""))].sort(),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
