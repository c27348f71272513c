/**
 * The packages an SPDX JSON SBOM (as syft writes it) lists, read the same way by the signing
 * resource (how many), the gate (how many, in the verified attestation) and the pull-request comment
 * (what changed). Each package is named by its package URL's type (`pypi` for the backend's Python
 * packages, `deb` for the base image's Debian packages), name and version; the image itself, which
 * syft lists as a package too, is left out. Pure: no I/O.
 */

/** One package of an SBOM. */
export interface SbomPackage {
  /** The package URL's type: `pypi`, `deb`, ...; `other` without a package URL. */
  ecosystem: string;
  name: string;
  version: string;
}

interface SpdxPackage {
  name?: unknown;
  versionInfo?: unknown;
  primaryPackagePurpose?: unknown;
  externalRefs?: { referenceType?: unknown; referenceLocator?: unknown }[];
}

/** The packages of an SPDX JSON document, sorted and without duplicates; throws when it is not one. */
export function sbomPackages(document: unknown): SbomPackage[] {
  const doc = document as { spdxVersion?: unknown; packages?: unknown } | null;
  if (doc === null || typeof doc !== "object" || typeof doc.spdxVersion !== "string" || !Array.isArray(doc.packages)) {
    throw new Error("not an SPDX JSON document (no spdxVersion and packages)");
  }
  const seen = new Map<string, SbomPackage>();
  for (const raw of doc.packages as SpdxPackage[]) {
    const purl = raw.externalRefs?.find((ref) => ref.referenceType === "purl")?.referenceLocator;
    const type = typeof purl === "string" ? /^pkg:([a-z0-9.+-]+)\//.exec(purl)?.[1] : undefined;
    // The image (pkg:oci, purpose CONTAINER) is what the SBOM is about, not one of its packages.
    if (type === "oci" || raw.primaryPackagePurpose === "CONTAINER") continue;
    if (typeof raw.name !== "string" || raw.name === "") continue;
    const version = typeof raw.versionInfo === "string" ? raw.versionInfo : "";
    const pkg = { ecosystem: type ?? "other", name: raw.name, version };
    seen.set(`${pkg.ecosystem}\u0000${pkg.name}\u0000${version}`, pkg);
  }
  return [...seen.values()].sort((a, b) => a.ecosystem.localeCompare(b.ecosystem) || a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
}

/** The in-toto predicate type cosign gives an `--type spdxjson` attestation. */
export const SPDX_PREDICATE_TYPE = "https://spdx.dev/Document";
