/**
 * Keeps one GitHub issue per stack for drift: opened (or edited) while a check finds drift, closed
 * with a comment by the first check that finds none. The issue is found by the hidden marker its
 * body starts with, so a renamed issue is still found, and only issues carrying it are ever touched.
 * Two open issues of one stack (a race of two runs) are folded into the oldest.
 */
import type { Octokit } from "@octokit/rest";
import { type DriftContext, type DriftResult, driftIssueBody, driftMarker, driftResolvedComment, driftTitle } from "./drift";

/** The repository the issues live in. */
export interface RepositoryRef {
  owner: string;
  repo: string;
}

/** What one sync did. */
export interface DriftIssueSync {
  action: "created" | "updated" | "unchanged" | "closed" | "none";
  /** The issue's number, when there is one. */
  number?: number;
  /** Later duplicates closed in favour of the oldest. */
  closedDuplicates: number[];
}

/** The open issues of the repository whose body starts with the stack's marker, oldest first. */
async function openDriftIssues(octokit: Octokit, repo: RepositoryRef, stack: string): Promise<{ number: number; body: string }[]> {
  const marker = driftMarker(stack);
  const issues = await octokit.paginate(octokit.rest.issues.listForRepo, { ...repo, state: "open", per_page: 100 });
  return issues
    .filter((i) => i.pull_request === undefined && (i.body ?? "").startsWith(marker))
    .map((i) => ({ number: i.number, body: i.body ?? "" }))
    .sort((a, b) => a.number - b.number);
}

/**
 * Makes the repository's drift issue of `result.stack` say what `result` found. An `unknown`
 * result changes nothing: a failed check says nothing about drift.
 */
export async function syncDriftIssue(
  octokit: Octokit,
  repo: RepositoryRef,
  result: DriftResult,
  context: DriftContext = {},
  secrets: readonly string[] = [],
): Promise<DriftIssueSync> {
  if (result.status === "unknown") return { action: "none", closedDuplicates: [] };
  const open = await openDriftIssues(octokit, repo, result.stack);
  const [kept, ...duplicates] = open;
  const closedDuplicates: number[] = [];
  for (const d of duplicates) {
    await octokit.rest.issues.createComment({ ...repo, issue_number: d.number, body: `Duplicate of #${kept?.number ?? ""}; closing.\n` });
    await octokit.rest.issues.update({ ...repo, issue_number: d.number, state: "closed", state_reason: "not_planned" });
    closedDuplicates.push(d.number);
  }

  if (result.status === "none") {
    if (kept === undefined) return { action: "none", closedDuplicates };
    await octokit.rest.issues.createComment({ ...repo, issue_number: kept.number, body: driftResolvedComment(result, context) });
    await octokit.rest.issues.update({ ...repo, issue_number: kept.number, state: "closed", state_reason: "completed" });
    return { action: "closed", number: kept.number, closedDuplicates };
  }

  const body = driftIssueBody(result, context, secrets);
  if (kept === undefined) {
    const { data } = await octokit.rest.issues.create({ ...repo, title: driftTitle(result.stack), body });
    return { action: "created", number: data.number, closedDuplicates };
  }
  // The check time is in the body, so every run edits it: the issue shows when drift was last seen.
  if (kept.body === body) return { action: "unchanged", number: kept.number, closedDuplicates };
  await octokit.rest.issues.update({ ...repo, issue_number: kept.number, body });
  return { action: "updated", number: kept.number, closedDuplicates };
}
