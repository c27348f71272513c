/**
 * Posts the preview comment parts on a pull request and keeps them to one comment per part across
 * runs: existing parts are found by the hidden marker and edited in place, missing ones created,
 * surplus ones (a later run needing fewer parts, or a duplicate) deleted.
 */
import { Octokit } from "@octokit/rest";
import { partOf } from "./preview/split";

/** Where to comment. */
export interface PullRequestRef {
  owner: string;
  repo: string;
  /** The pull request's number (pull requests are issues to the comments API). */
  issueNumber: number;
}

/** What a run did, by comment id. */
export interface PostResult {
  created: number[];
  updated: number[];
  unchanged: number[];
  deleted: number[];
}

/** An Octokit for the GitHub REST API; `baseUrl` lets tests and GitHub Enterprise point it elsewhere. */
export function createOctokit(token: string, baseUrl = "https://api.github.com"): Octokit {
  return new Octokit({ auth: token, baseUrl, userAgent: "backend-delivery-pr-comment" });
}

/**
 * Makes the pull request's preview comments equal to `parts` (part i is `parts[i - 1]`). Only
 * comments whose body starts with the marker are touched, never anyone else's.
 */
export async function upsertPreviewComments(
  octokit: Octokit,
  pr: PullRequestRef,
  parts: readonly string[],
): Promise<PostResult> {
  if (parts.length === 0) throw new Error("upsertPreviewComments: no comment parts to post");
  const comments = await octokit.paginate(octokit.rest.issues.listComments, {
    owner: pr.owner,
    repo: pr.repo,
    issue_number: pr.issueNumber,
    per_page: 100,
  });
  // The oldest comment of each part wins; later duplicates (from a race) are removed.
  const byPart = new Map<number, { id: number; body: string }>();
  const surplus: number[] = [];
  for (const c of [...comments].sort((a, b) => a.id - b.id)) {
    const part = partOf(c.body ?? "");
    if (part === undefined) continue;
    if (byPart.has(part) || part > parts.length) surplus.push(c.id);
    else byPart.set(part, { id: c.id, body: c.body ?? "" });
  }

  const result: PostResult = { created: [], updated: [], unchanged: [], deleted: [] };
  for (const [i, body] of parts.entries()) {
    const existing = byPart.get(i + 1);
    if (existing === undefined) {
      const { data } = await octokit.rest.issues.createComment({
        owner: pr.owner,
        repo: pr.repo,
        issue_number: pr.issueNumber,
        body,
      });
      result.created.push(data.id);
    } else if (existing.body !== body) {
      await octokit.rest.issues.updateComment({ owner: pr.owner, repo: pr.repo, comment_id: existing.id, body });
      result.updated.push(existing.id);
    } else {
      result.unchanged.push(existing.id);
    }
  }
  for (const id of surplus) {
    await octokit.rest.issues.deleteComment({ owner: pr.owner, repo: pr.repo, comment_id: id });
    result.deleted.push(id);
  }
  return result;
}
