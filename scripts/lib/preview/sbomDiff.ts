/**
 * What a promotion changes in the image's dependencies: the packages of the candidate's SBOM against
 * those of the image prod runs now (both read from their verified attestations), as added, removed
 * and changed packages with versions, and the Markdown the pull-request comment shows for it: the
 * counts first, the lists folded when long (split into parts with the rest of the comment, never
 * cut). Pure: no I/O.
 */
import type { SbomPackage } from "../../../components/supplyChain/sbom";

/** One package whose versions differ between the two images. */
export interface ChangedPackage {
  ecosystem: string;
  name: string;
  /** Version(s) in prod's current image. */
  from: string;
  /** Version(s) in the candidate. */
  to: string;
}

/** The difference of two package lists. */
export interface SbomDiff {
  added: SbomPackage[];
  removed: SbomPackage[];
  changed: ChangedPackage[];
}

/** What the comment says about the dependencies of one promotion. */
export interface DependencyChanges {
  /** The candidate's digest (or reference). */
  candidate: string;
  /** The digest prod runs now; absent on prod's first deploy. */
  current?: string;
  /** The difference, when both SBOMs could be read (the current one counts as empty on a first deploy). */
  diff?: SbomDiff;
  /** Why there is no difference to show (an SBOM missing or not verifying). */
  problem?: string;
}

/** Lists longer than this are folded. */
export const FOLD_AFTER = 10;

const key = (p: { ecosystem: string; name: string }) => `${p.ecosystem}\u0000${p.name}`;

/** `after` against `before`, by package type and name; several versions of one name count as one entry. */
export function diffSboms(before: readonly SbomPackage[], after: readonly SbomPackage[]): SbomDiff {
  const versions = (list: readonly SbomPackage[]) => {
    const map = new Map<string, { pkg: SbomPackage; versions: string[] }>();
    for (const pkg of list) {
      const entry = map.get(key(pkg)) ?? { pkg, versions: [] };
      entry.versions.push(pkg.version);
      map.set(key(pkg), entry);
    }
    for (const entry of map.values()) entry.versions.sort();
    return map;
  };
  const old = versions(before);
  const next = versions(after);
  const added: SbomPackage[] = [];
  const changed: ChangedPackage[] = [];
  for (const [k, entry] of next) {
    const was = old.get(k);
    if (was === undefined) added.push(...after.filter((p) => key(p) === k));
    else if (was.versions.join(", ") !== entry.versions.join(", ")) {
      changed.push({ ecosystem: entry.pkg.ecosystem, name: entry.pkg.name, from: was.versions.join(", "), to: entry.versions.join(", ") });
    }
  }
  const removed = before.filter((p) => !next.has(key(p)));
  const order = (a: { ecosystem: string; name: string }, b: { ecosystem: string; name: string }) => a.ecosystem.localeCompare(b.ecosystem) || a.name.localeCompare(b.name);
  return { added: added.sort(order), removed: [...removed].sort(order), changed: changed.sort(order) };
}

/** What a package URL type is called in the comment. */
function kind(ecosystem: string): string {
  return ({ pypi: "Python", deb: "Debian" } as Record<string, string>)[ecosystem] ?? ecosystem;
}

/** A table of packages, folded under `title` when long. */
function table(title: string, header: string, rows: string[]): string[] {
  if (rows.length === 0) return [];
  const lines = [header, `|${header.split("|").slice(1, -1).map(() => "---").join("|")}|`, ...rows];
  if (rows.length <= FOLD_AFTER) return [`**${title}**`, "", ...lines, ""];
  return ["<details>", `<summary>${title}</summary>`, "", ...lines, "", "</details>", ""];
}

/** The comment's section on the dependencies of one promotion; `code` quotes a value as inline code. */
export function renderDependencyChanges(changes: DependencyChanges, code: (text: string) => string): string[] {
  const against = changes.current === undefined ? "prod runs no image yet" : `against prod's ${code(changes.current)}`;
  const head = `**Dependency changes** of ${code(changes.candidate)} (from the SBOMs, ${against})`;
  if (changes.diff === undefined) return [`${head}: not shown — ${changes.problem ?? "no SBOM"}.`, ""];
  const { added, removed, changed } = changes.diff;
  if (added.length + removed.length + changed.length === 0) return [`${head}: no change.`, ""];
  const counts = `${added.length} added, ${removed.length} removed, ${changed.length} changed`;
  return [
    `${head}: ${counts}`,
    "",
    ...table(`Changed (${changed.length})`, "| Package | Type | Prod | Candidate |", changed.map((c) => `| ${code(c.name)} | ${kind(c.ecosystem)} | ${c.from} | ${c.to} |`)),
    ...table(`Added (${added.length})`, "| Package | Type | Version |", added.map((p) => `| ${code(p.name)} | ${kind(p.ecosystem)} | ${p.version} |`)),
    ...table(`Removed (${removed.length})`, "| Package | Type | Version |", removed.map((p) => `| ${code(p.name)} | ${kind(p.ecosystem)} | ${p.version} |`)),
  ];
}
