import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createOctokit, upsertPreviewComments } from "../scripts/lib/githubComment";
import { renderPreviewComment } from "../scripts/lib/preview/render";
import { MARKER } from "../scripts/lib/preview/split";
import type { StackPreview } from "../scripts/lib/preview/stackSummary";

const run = promisify(execFile);
const ROOT = path.join(__dirname, "..");
const fixture = (name: string) => path.join(__dirname, "fixtures/preview", name);
const TOKEN = "test-token-not-real-5e2a";
const CANARY = "CANARY-db-pass-7731";

interface Received {
  method: string;
  path: string;
  auth: string | undefined;
  body?: { body?: string };
}

/** A stand-in for the few GitHub endpoints the poster uses; pages of 2 to exercise pagination. */
class FakeGitHub {
  received: Received[] = [];
  comments: { id: number; body: string; user: { login: string } }[] = [];
  failNextCreate = false;
  private nextId = 1000;
  private server = http.createServer((req, res) => void this.handle(req, res));
  url = "";

  async start(): Promise<void> {
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
  async stop(): Promise<void> {
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }
  seed(body: string, login = "github-actions[bot]"): number {
    const id = this.nextId++;
    this.comments.push({ id, body, user: { login } });
    return id;
  }
  bodies(): string[] {
    return this.received.flatMap((r) => (r.body?.body === undefined ? [] : [r.body.body]));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", this.url);
    this.received.push({
      method: req.method ?? "",
      path: url.pathname + url.search,
      auth: req.headers.authorization,
      ...(raw ? { body: JSON.parse(raw) as { body?: string } } : {}),
    });
    const send = (status: number, data?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(data === undefined ? "" : JSON.stringify(data));
    };
    const list = /^\/repos\/acme\/backend\/issues\/7\/comments$/.test(url.pathname);
    const one = /^\/repos\/acme\/backend\/issues\/comments\/(\d+)$/.exec(url.pathname);
    if (list && req.method === "GET") {
      const page = Number(url.searchParams.get("page") ?? "1");
      const slice = this.comments.slice((page - 1) * 2, page * 2);
      const last = Math.max(1, Math.ceil(this.comments.length / 2));
      const link: Record<string, string> =
        page < last ? { link: `<${this.url}${url.pathname}?per_page=100&page=${page + 1}>; rel="next"` } : {};
      return send(200, slice, link);
    }
    if (list && req.method === "POST") {
      if (this.failNextCreate) {
        this.failNextCreate = false;
        return send(403, { message: "Resource not accessible by integration" });
      }
      const body = (JSON.parse(raw) as { body: string }).body;
      const id = this.seed(body);
      return send(201, { id, body });
    }
    if (one && req.method === "PATCH") {
      const c = this.comments.find((x) => x.id === Number(one[1]));
      if (!c) return send(404, { message: "Not Found" });
      c.body = (JSON.parse(raw) as { body: string }).body;
      return send(200, c);
    }
    if (one && req.method === "DELETE") {
      this.comments = this.comments.filter((x) => x.id !== Number(one[1]));
      return send(204);
    }
    return send(404, { message: `no route ${req.method} ${url.pathname}` });
  }
}

const gh = new FakeGitHub();
const pr = { owner: "acme", repo: "backend", issueNumber: 7 };
const staging: StackPreview = { stack: "staging", json: fs.readFileSync(fixture("staging-changes.json"), "utf8") };
const prodBlocked: StackPreview = {
  stack: "prod",
  json: fs.readFileSync(fixture("prod-blocked.json"), "utf8"),
  exitCode: 255,
  promotion: true,
};

beforeAll(() => gh.start());
afterAll(() => gh.stop());
beforeEach(() => {
  gh.received = [];
  gh.comments = [];
});

const calls = () => gh.received.map((r) => `${r.method} ${r.path.replace(/\?.*$/, "")}`);

describe("upsertPreviewComments", () => {
  it("creates the comment once, then edits it in place on the next run", async () => {
    gh.seed("LGTM", "reviewer");
    gh.seed(`> ${MARKER} quoted by a person`, "reviewer");
    gh.seed("another unrelated comment", "reviewer");
    const octokit = createOctokit(TOKEN, gh.url);

    const first = renderPreviewComment([staging, prodBlocked]);
    const r1 = await upsertPreviewComments(octokit, pr, first);
    expect(calls()).toEqual([
      "GET /repos/acme/backend/issues/7/comments",
      "GET /repos/acme/backend/issues/7/comments",
      "POST /repos/acme/backend/issues/7/comments",
    ]);
    expect(gh.received.every((r) => r.auth === `token ${TOKEN}`)).toBe(true);
    expect(r1.created).toHaveLength(1);
    expect(gh.received[2]!.body).toEqual({ body: first[0] });

    gh.received = [];
    const second = renderPreviewComment([staging, { ...prodBlocked, json: fs.readFileSync(fixture("prod-allowed.json"), "utf8"), exitCode: 0 }]);
    const r2 = await upsertPreviewComments(octokit, pr, second);
    expect(calls()).toEqual([
      "GET /repos/acme/backend/issues/7/comments",
      "GET /repos/acme/backend/issues/7/comments",
      `PATCH /repos/acme/backend/issues/comments/${r1.created[0]}`,
    ]);
    expect(r2).toEqual({ created: [], updated: r1.created, unchanged: [], deleted: [] });
    expect(gh.comments.filter((c) => c.body.startsWith(MARKER))).toHaveLength(1);
    expect(gh.comments.map((c) => c.body)).toContain(second[0]);
    expect(gh.comments.map((c) => c.body)).toContain(`> ${MARKER} quoted by a person`);

    // The same preview again changes nothing.
    gh.received = [];
    const r3 = await upsertPreviewComments(octokit, pr, second);
    expect(calls().filter((c) => !c.startsWith("GET"))).toEqual([]);
    expect(r3.unchanged).toEqual(r1.created);
  });

  it("posts numbered parts, each found again by its part number, and deletes surplus parts", async () => {
    const octokit = createOctokit(TOKEN, gh.url);
    const three = ["a", "b", "c"].map((x, i) => `${MARKER}\n<!-- backend-delivery:preview part ${i + 1}/3 -->\n${x}`);
    const r1 = await upsertPreviewComments(octokit, pr, three);
    expect(r1.created).toHaveLength(3);
    expect(gh.comments.map((c) => c.body)).toEqual(three);

    gh.received = [];
    const two = ["A", "B"].map((x, i) => `${MARKER}\n<!-- backend-delivery:preview part ${i + 1}/2 -->\n${x}`);
    const r2 = await upsertPreviewComments(octokit, pr, two);
    expect(r2).toEqual({ created: [], updated: r1.created.slice(0, 2), unchanged: [], deleted: [r1.created[2]] });
    expect(calls().filter((c) => !c.startsWith("GET"))).toEqual([
      `PATCH /repos/acme/backend/issues/comments/${r1.created[0]}`,
      `PATCH /repos/acme/backend/issues/comments/${r1.created[1]}`,
      `DELETE /repos/acme/backend/issues/comments/${r1.created[2]}`,
    ]);
    expect(gh.comments.map((c) => c.body)).toEqual(two);
  });

  it("removes a duplicate of a part left by a concurrent run", async () => {
    const part = `${MARKER}\n<!-- backend-delivery:preview part 1/1 -->\nold`;
    const keep = gh.seed(part);
    const dup = gh.seed(part);
    const r = await upsertPreviewComments(createOctokit(TOKEN, gh.url), pr, [`${part}!`]);
    expect(r).toEqual({ created: [], updated: [keep], unchanged: [], deleted: [dup] });
  });
});

// Each case starts the CLI through tsx: seconds apiece on a busy machine.
describe("scripts/pr-comment.ts", { timeout: 90_000 }, () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "pr-comment-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cli = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [path.join(ROOT, "node_modules/tsx/dist/cli.mjs"), "scripts/pr-comment.ts", ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? "",
        GITHUB_TOKEN: TOKEN,
        GITHUB_API_URL: gh.url,
        GITHUB_REPOSITORY: "acme/backend",
        ...env,
      },
    });

  it("posts a failed preview's error, with the gate's reasons, and never a secret from the stack config", async () => {
    const secretsFile = path.join(dir, "staging-config.json");
    fs.writeFileSync(
      secretsFile,
      JSON.stringify({
        "backend-delivery:environment": { value: "staging", secret: false },
        "backend-delivery:secrets": {
          value: JSON.stringify({ DATABASE_URL: `amqp://app:${CANARY}@mq.internal:5672/app` }),
          objectValue: { DATABASE_URL: `amqp://app:${CANARY}@mq.internal:5672/app`, API_KEY: "k-8d1e9" },
          secret: true,
        },
      }),
    );
    const log = path.join(dir, "prod.log");
    fs.writeFileSync(log, `error: preview failed; API key k-8d1e9 was set\n`);
    const { stdout } = await cli([
      "--stack", `staging=${fixture("staging-failed.json")}`,
      "--stack", `prod=${fixture("prod-blocked.json")}`,
      "--exit-code", "staging=255",
      "--exit-code", "prod=255",
      "--log", `prod=${log}`,
      "--secrets-file", secretsFile,
      "--pr", "7",
    ]);
    expect(stdout).toContain("preview comment on acme/backend#7: 1 part(s); created 1, updated 0, unchanged 0, deleted 0");
    const posted = gh.bodies();
    expect(posted).toHaveLength(1);
    const body = posted[0]!;
    expect(body.startsWith(MARKER)).toBe(true);
    expect(body).toContain("### `staging`: preview FAILED");
    expect(body).toContain("Too small: expected number to be >=64");
    expect(body).toContain("**Promotion: BLOCKED** (1 reason)");
    for (const leaked of [CANARY, "k-8d1e9", TOKEN]) {
      expect(gh.received.map((r) => JSON.stringify(r.body ?? {})).join("\n")).not.toContain(leaked);
      expect(stdout).not.toContain(leaked);
    }
  });

  it("comments even when a preview wrote nothing, and updates the same comment on the next run", async () => {
    const args = ["--stack", `staging=${fixture("staging-changes.json")}`, "--stack", `prod=${path.join(dir, "missing.json")}`, "--pr", "7"];
    await cli(args);
    await cli([...args.slice(0, 2), "--stack", `prod=${fixture("prod-allowed.json")}`, "--pr", "7"]);
    expect(calls().filter((c) => !c.startsWith("GET"))).toEqual([
      "POST /repos/acme/backend/issues/7/comments",
      `PATCH /repos/acme/backend/issues/comments/${gh.comments[0]!.id}`,
    ]);
    const [first, second] = gh.bodies();
    expect(first).toContain("`pulumi preview --json` wrote nothing to stdout");
    expect(second).toContain("**Promotion: ALLOWED**");
  });

  it("exits 1 with GitHub's status when the comment is refused, without the token", async () => {
    gh.failNextCreate = true;
    const err = await cli(["--stack", `staging=${fixture("staging-changes.json")}`, "--pr", "7"]).catch((e: unknown) => e);
    const e = err as { code: number; stderr: string };
    expect(e.code).toBe(1);
    expect(e.stderr).toContain("GitHub refused the preview comment (HTTP 403): Resource not accessible by integration");
    expect(e.stderr).not.toContain(TOKEN);
  });

  it("exits 2 naming the problem for bad input", async () => {
    const cases: [string[], string][] = [
      [[], "name at least one preview: --stack <name>=<pulumi preview --json output>"],
      [["--stack", "staging"], "--stack takes NAME=VALUE, got 'staging'"],
      [["--stack", "s=x.json", "--exit-code", "prod=1"], "'prod' has an exit code or log but no --stack prod=<file>"],
      [["--stack", `s=${fixture("staging-changes.json")}`, "--secrets-file", fixture("staging-changes.json")], "is not the output of `pulumi config --show-secrets --json`"],
    ];
    for (const [args, message] of cases) {
      const e = (await cli(args).catch((x: unknown) => x)) as { code: number; stderr: string };
      expect(e.code).toBe(2);
      expect(e.stderr).toContain(message);
    }
    const hidden = path.join(dir, "hidden.json");
    fs.writeFileSync(hidden, JSON.stringify({ "backend-delivery:secrets": { secret: true } }));
    const e = (await cli(["--stack", `s=${fixture("staging-changes.json")}`, "--secrets-file", hidden, "--pr", "7"]).catch((x: unknown) => x)) as {
      code: number;
      stderr: string;
    };
    expect(e.code).toBe(2);
    expect(e.stderr).toContain("holds secret keys without their values (backend-delivery:secrets)");
    expect(gh.received).toEqual([]);
  });
});
