/**
 * The drift check: reading real `pulumi preview --refresh --expect-no-changes --json` documents
 * (captured by test/operations.e2e.test.ts), the record it keeps, the one GitHub issue per stack
 * (against a stand-in GitHub API), and `npm run drift` itself against a stand-in `pulumi`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { DRIFT_TAG, driftIssueBody, driftMarker, driftRecord, readDriftCheck, readDriftRecord, type DriftResult } from "../scripts/lib/drift";
import { createOctokit } from "../scripts/lib/githubComment";
import { syncDriftIssue } from "../scripts/lib/githubIssue";
import { FakeGitHubIssues } from "../support/fakeGitHubIssues";
import { createFakePulumi, makeProjectDirWithLocalState, runScript, type FakePulumi } from "../support/fakePulumi";

const fixture = (name: string) => fs.readFileSync(path.join(__dirname, "fixtures/preview", name), "utf8");
const AT = new Date("2030-01-02T03:04:05.000Z");
// What the real CLI (3.274) prints, with exit code 7, when --expect-no-changes finds a change.
const EXPECTED_NO_CHANGES = "error: no changes were expected for preview but changes were proposed";

describe("readDriftCheck (real documents)", () => {
  it("no drift: the stack as recorded", () => {
    const r = readDriftCheck({ stack: "staging", json: fixture("drift-none.json"), exitCode: 0 }, AT);
    expect(r).toEqual({ stack: "staging", status: "none", checkedAt: AT.toISOString(), changes: [], errors: [] });
  });

  it("a release container removed by hand: drift, naming the release to create again, not an error", () => {
    const r = readDriftCheck({ stack: "staging", json: fixture("drift-release-removed.json"), exitCode: 7, log: EXPECTED_NO_CHANGES }, AT);
    expect(r.status).toBe("drift");
    expect(r.errors).toEqual([]);
    expect(r.changes).toContainEqual(expect.objectContaining({ op: "create", type: "pulumi-nodejs:dynamic:Resource", name: "backend-delivery-staging-release" }));
  });

  it("a preview that failed before its end says nothing about drift: unknown, with the error", () => {
    const r = readDriftCheck({ stack: "staging", json: fixture("staging-failed.json"), exitCode: 255 }, AT);
    expect(r.status).toBe("unknown");
    expect(r.errors.length).toBeGreaterThan(0);
  });

  it("no document at all (the CLI failed early): unknown, with the tail of its log, redacted", () => {
    const r = readDriftCheck({ stack: "prod", json: "", exitCode: 255, log: "error: could not reach ssh://deploy@prod with password hunter2-canary" }, AT, ["hunter2-canary"]);
    expect(r.status).toBe("unknown");
    expect(r.errors.join("\n")).not.toContain("hunter2-canary");
  });

  it("a clean document with a non-zero exit: unknown, never `none`", () => {
    const r = readDriftCheck({ stack: "staging", json: fixture("drift-none.json"), exitCode: 255, log: "error: the backend is locked" }, AT);
    expect(r).toMatchObject({ status: "unknown", errors: ["error: the backend is locked"] });
  });
});

describe("the drift record (stack tag)", () => {
  const result: DriftResult = { stack: "s", status: "drift", checkedAt: AT.toISOString(), changes: [{ op: "create", type: "t", name: "n", keys: [] }], errors: [] };

  it("round-trips, holding counts only", () => {
    expect(JSON.parse(driftRecord(result))).toEqual({ status: "drift", checkedAt: AT.toISOString(), changes: 1 });
    expect(readDriftRecord(driftRecord(result))).toEqual({ status: "drift", checkedAt: AT.toISOString(), changes: 1 });
  });

  it.each([undefined, "", "not json", '{"status":"maybe","checkedAt":"x","changes":1}'])("reads %j as no record", (value) => {
    expect(readDriftRecord(value)).toBeUndefined();
  });
});

describe("driftIssueBody", () => {
  it("starts with the stack's marker, lists each change with its keys, says how to resolve it, and is redacted", () => {
    const body = driftIssueBody(
      {
        stack: "prod",
        status: "drift",
        checkedAt: AT.toISOString(),
        changes: [{ op: "update", type: "docker:index/container:Container", name: "proxy-canary-9f1e", keys: ["ports"] }],
        errors: [],
      },
      { runUrl: "https://github.com/acme/backend/actions/runs/7", commit: "0123456789ab" },
      ["canary-9f1e"],
    );
    expect(body.startsWith(`${driftMarker("prod")}\n`)).toBe(true);
    expect(body).toContain("- **update** `docker:index/container:Container` `proxy-[secret]` (`ports`)");
    expect(body).toContain("`pulumi up --stack prod`");
    expect(body).toContain("[workflow run](https://github.com/acme/backend/actions/runs/7)");
    expect(body).not.toContain("canary-9f1e");
  });

  it("folds a long list after 50 resources", () => {
    const changes = Array.from({ length: 60 }, (_, i) => ({ op: "update" as const, type: "t", name: `r${i}`, keys: [] }));
    const body = driftIssueBody({ stack: "s", status: "drift", checkedAt: AT.toISOString(), changes, errors: [] });
    expect(body).toContain("`r49`");
    expect(body).not.toContain("`r50`");
    expect(body).toContain("… and 10 more");
  });
});

describe("syncDriftIssue (stand-in GitHub API)", () => {
  const gh = new FakeGitHubIssues();
  const repo = { owner: "acme", repo: "backend" };
  const TOKEN = "test-token-not-real-1c0d";
  const drift = (stack: string, at = AT): DriftResult => ({
    stack,
    status: "drift",
    checkedAt: at.toISOString(),
    changes: [{ op: "create", type: "pulumi-nodejs:dynamic:Resource", name: `${stack}-release`, keys: [] }],
    errors: [],
  });
  const none = (stack: string): DriftResult => ({ stack, status: "none", checkedAt: AT.toISOString(), changes: [], errors: [] });
  const octokit = () => createOctokit(TOKEN, gh.url);
  beforeAll(() => gh.start());
  afterAll(() => gh.stop());
  beforeEach(() => {
    gh.issues = [];
    gh.received = [];
  });

  it("opens one issue on drift, edits that one on the next, closes it with a comment when the drift is gone", async () => {
    gh.seed("Unrelated bug", "the button is blue");
    const first = await syncDriftIssue(octokit(), repo, drift("prod"));
    expect(first.action).toBe("created");
    expect(gh.open().filter((i) => i.body.startsWith(driftMarker("prod")))).toHaveLength(1);
    expect(gh.received.every((r) => r.auth === `token ${TOKEN}`)).toBe(true);

    const second = await syncDriftIssue(octokit(), repo, drift("prod", new Date(AT.getTime() + 86_400_000)));
    expect(second).toEqual({ action: "updated", number: first.number, closedDuplicates: [] });
    expect(gh.issues.filter((i) => i.body.startsWith(driftMarker("prod")))).toHaveLength(1);
    expect(await syncDriftIssue(octokit(), repo, drift("prod", new Date(AT.getTime() + 86_400_000)))).toMatchObject({ action: "unchanged" });

    const closed = await syncDriftIssue(octokit(), repo, none("prod"));
    expect(closed).toEqual({ action: "closed", number: first.number, closedDuplicates: [] });
    const issue = gh.issues.find((i) => i.number === first.number)!;
    expect(issue).toMatchObject({ state: "closed", state_reason: "completed" });
    expect(issue.comments[0]).toContain("No drift any more");
    // The unrelated issue was never touched.
    expect(gh.issues.find((i) => i.title === "Unrelated bug")).toMatchObject({ state: "open", comments: [] });
    // A later drift opens a new one: the closed issue is history.
    expect((await syncDriftIssue(octokit(), repo, drift("prod"))).action).toBe("created");
  });

  it("keeps stacks apart, ignores pull requests and closed issues with the marker, and folds duplicates into the oldest", async () => {
    const staging = gh.seed("Drift: staging", `${driftMarker("staging")}\nold`);
    gh.seed("a pull request quoting the marker", `${driftMarker("prod")}\n`, { pullRequest: true });
    gh.seed("closed long ago", `${driftMarker("prod")}\n`, { state: "closed" });
    const oldest = gh.seed("Drift: prod", `${driftMarker("prod")}\nfirst`);
    const dupe = gh.seed("Drift: prod (race)", `${driftMarker("prod")}\nsecond`);
    const r = await syncDriftIssue(octokit(), repo, drift("prod"));
    expect(r).toEqual({ action: "updated", number: oldest, closedDuplicates: [dupe] });
    expect(gh.issues.find((i) => i.number === dupe)).toMatchObject({ state: "closed", state_reason: "not_planned", comments: [`Duplicate of #${oldest}; closing.\n`] });
    expect(gh.issues.find((i) => i.number === staging)!.body).toBe(`${driftMarker("staging")}\nold`);
  });

  it("an unknown result changes nothing, and no drift with no issue does nothing", async () => {
    const before = gh.seed("Drift: prod", `${driftMarker("prod")}\n`);
    expect(await syncDriftIssue(octokit(), repo, { ...none("prod"), status: "unknown", errors: ["x"] })).toEqual({ action: "none", closedDuplicates: [] });
    expect(gh.received).toEqual([]);
    expect(await syncDriftIssue(octokit(), repo, none("staging"))).toEqual({ action: "none", closedDuplicates: [] });
    expect(gh.issues.find((i) => i.number === before)!.state).toBe("open");
  });
});

describe("npm run drift (stand-in pulumi)", () => {
  const gh = new FakeGitHubIssues();
  let fake: FakePulumi | undefined;
  let dir: string;
  const CANARY = "canary-drift-secret-4d1a";
  const stacks = () => ({ staging: { environment: { value: "staging", secret: false }, "secrets.SECRET_KEY": { value: CANARY, secret: true } } });
  beforeAll(() => gh.start());
  afterAll(() => gh.stop());
  beforeEach(() => {
    gh.issues = [];
    dir = makeProjectDirWithLocalState();
  });
  afterEach(() => {
    fake?.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const drift = (args: string[], env: NodeJS.ProcessEnv = {}) => runScript("drift", args, { fake: fake!, projectDir: dir, env });

  it("no drift: exit 0, the refreshing preview with --expect-no-changes, the record kept as a stack tag", async () => {
    fake = createFakePulumi({ stacks: stacks(), preview: { code: 0, stdout: fixture("drift-none.json") } });
    const r = await drift(["staging"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("No drift: stack staging");
    const preview = fake.calls().find((c) => c.argv[0] === "preview")!;
    expect(preview.argv).toEqual(["preview", "--refresh", "--expect-no-changes", "--json", "--stack", "staging", "--non-interactive", "--policy-pack", "policy"]);
    expect(readDriftRecord(fake.tags().staging?.[DRIFT_TAG])).toMatchObject({ status: "none", changes: 0 });
  });

  it("drift: exit 1, what differs listed; --json prints the result; nothing secret anywhere", async () => {
    fake = createFakePulumi({ stacks: stacks(), preview: { code: 7, stdout: fixture("drift-release-removed.json"), stderr: `${EXPECTED_NO_CHANGES} (${CANARY})` } });
    const r = await drift(["staging"]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^Drift: stack staging differs in \d+ resource\(s\)/m);
    expect(r.stdout).toContain("create pulumi-nodejs:dynamic:Resource backend-delivery-staging-release");
    const json = await drift(["staging", "--json"]);
    expect(json.code).toBe(1);
    expect((JSON.parse(json.stdout) as DriftResult).status).toBe("drift");
    for (const out of [r.stdout, r.stderr, json.stdout, json.stderr]) expect(out).not.toContain(CANARY);
    expect(readDriftRecord(fake.tags().staging?.[DRIFT_TAG])?.status).toBe("drift");
  });

  it("--github: opens the stack's issue through the API at GITHUB_API_URL with GITHUB_TOKEN; a refusal is exit 2", async () => {
    fake = createFakePulumi({ stacks: stacks(), preview: { code: 7, stdout: fixture("drift-release-removed.json"), stderr: EXPECTED_NO_CHANGES } });
    const env = { GITHUB_TOKEN: "test-token-not-real-77aa", GITHUB_API_URL: gh.url, GITHUB_REPOSITORY: "acme/backend" };
    const r = await drift(["staging", "--github"], env);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain("drift issue of staging on acme/backend: created #1");
    expect(gh.open()).toHaveLength(1);
    gh.failNextWrite = true;
    const refused = await drift(["staging", "--github"], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("GitHub refused the drift report (HTTP 403)");
    expect(refused.stderr).not.toContain("test-token-not-real-77aa");
  });

  it.each([
    ["no stack named", [], "Name exactly one stack."],
    ["an unknown option", ["staging", "--yes"], "Unknown option '--yes'"],
    ["--repo without --github", ["staging", "--repo", "a/b"], "--repo only goes with --github."],
    ["a stack that does not exist", ["nope"], "Stack nope does not exist in this backend"],
  ])("could not check (exit 2): %s", async (_name, args, message) => {
    fake = createFakePulumi({ stacks: stacks(), preview: { code: 0, stdout: fixture("drift-none.json") } });
    const r = await drift(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(fake.calls().some((c) => c.argv[0] === "preview")).toBe(false);
  });

  it("a preview that fails is exit 2, never a false drift", async () => {
    fake = createFakePulumi({ stacks: stacks(), preview: { code: 255, stdout: fixture("staging-failed.json") } });
    const r = await drift(["staging"]);
    expect(r.code).toBe(2);
    expect(r.stdout).toContain("Could not check stack staging for drift:");
  });
});
