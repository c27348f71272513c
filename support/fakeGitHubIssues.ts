/**
 * A stand-in for the few GitHub REST endpoints the drift reporter uses (list, create and edit issues,
 * comment on one), on a loopback port. Lists are served in pages of 2 so pagination is exercised, and
 * pull requests (which the issues API lists too) are mixed in.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

/** One request as the fake received it. */
export interface ReceivedRequest {
  method: string;
  /** Path without the query. */
  path: string;
  auth: string | undefined;
  body?: Record<string, unknown>;
}

/** An issue (or pull request) as the fake keeps it. */
export interface FakeIssue {
  number: number;
  title: string;
  body: string;
  state: "open" | "closed";
  state_reason?: string | null;
  pull_request?: { url: string };
  comments: string[];
}

/** The fake GitHub; `start()` it, point Octokit at `url`, `stop()` it. */
export class FakeGitHubIssues {
  received: ReceivedRequest[] = [];
  issues: FakeIssue[] = [];
  /** Answer the next write (POST or PATCH) with 403. */
  failNextWrite = false;
  private nextNumber = 1;
  private readonly server = http.createServer((req, res) => void this.handle(req, res));
  url = "";

  constructor(
    readonly owner = "acme",
    readonly repo = "backend",
  ) {}

  async start(): Promise<void> {
    await new Promise<void>((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((ok) => this.server.close(() => ok()));
  }

  /** Adds an issue (or, with `pullRequest`, a pull request) and returns its number. */
  seed(title: string, body: string, options: { state?: "open" | "closed"; pullRequest?: boolean } = {}): number {
    const number = this.nextNumber++;
    this.issues.push({
      number,
      title,
      body,
      state: options.state ?? "open",
      comments: [],
      ...(options.pullRequest ? { pull_request: { url: `${this.url}/pulls/${number}` } } : {}),
    });
    return number;
  }

  /** The open issues (not pull requests). */
  open(): FakeIssue[] {
    return this.issues.filter((i) => i.state === "open" && i.pull_request === undefined);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", this.url);
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : undefined;
    this.received.push({ method: req.method ?? "", path: url.pathname, auth: req.headers.authorization, ...(body ? { body } : {}) });
    const send = (status: number, data?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(data === undefined ? "" : JSON.stringify(data));
    };
    const base = `/repos/${this.owner}/${this.repo}/issues`;
    const one = new RegExp(`^${base}/(\\d+)$`).exec(url.pathname);
    const comments = new RegExp(`^${base}/(\\d+)/comments$`).exec(url.pathname);
    const write = req.method === "POST" || req.method === "PATCH";
    if (write && this.failNextWrite) {
      this.failNextWrite = false;
      return send(403, { message: "Resource not accessible by integration" });
    }
    if (url.pathname === base && req.method === "GET") {
      const state = url.searchParams.get("state") ?? "open";
      const listed = this.issues.filter((i) => state === "all" || i.state === state).sort((a, b) => b.number - a.number);
      const page = Number(url.searchParams.get("page") ?? "1");
      const last = Math.max(1, Math.ceil(listed.length / 2));
      const link: Record<string, string> = page < last ? { link: `<${this.url}${base}?state=${state}&per_page=100&page=${page + 1}>; rel="next"` } : {};
      return send(200, listed.slice((page - 1) * 2, page * 2), link);
    }
    if (url.pathname === base && req.method === "POST") {
      const number = this.seed(String(body?.title ?? ""), String(body?.body ?? ""));
      return send(201, this.issues.find((i) => i.number === number));
    }
    if (one && req.method === "PATCH") {
      const issue = this.issues.find((i) => i.number === Number(one[1]));
      if (!issue) return send(404, { message: "Not Found" });
      if (typeof body?.body === "string") issue.body = body.body;
      if (body?.state === "open" || body?.state === "closed") issue.state = body.state;
      if (typeof body?.state_reason === "string") issue.state_reason = body.state_reason;
      return send(200, issue);
    }
    if (comments && req.method === "POST") {
      const issue = this.issues.find((i) => i.number === Number(comments[1]));
      if (!issue) return send(404, { message: "Not Found" });
      issue.comments.push(String(body?.body ?? ""));
      return send(201, { id: issue.comments.length, body: body?.body });
    }
    return send(404, { message: `no route ${req.method} ${url.pathname}` });
  }
}
