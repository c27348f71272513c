// The edges of HTTP at the front proxy and at the real image: slow clients cut off within their
// bounds while the rest are served (through the proxy and directly), the framing rules, and release
// switches and a stopped release under a load of GETs and POSTs on kept-alive connections: no
// request reset, every one answered (a switch moves the proxy's upstream name and never reloads
// Caddy, whose reload would close its idle client connections), and a POST the proxy could not
// deliver refused with its 502, never applied. Real Caddy, the real
// image, the release and route providers `pulumi up` runs. Needs the engine, the local base image and
// the local Caddy image; fails (never skips) without them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import deadlines from "../backend/app/http_deadlines.json";
import { proxyProfile } from "../components/hardening";
import { PROXY_TIMEOUTS } from "../components/proxy/caddyConfig";
import { docker, uniqueName } from "../support/docker";
import { startLoad, type LoadReport, type LoadSample } from "../support/load";
import { startReleaseStack, type ReleaseStack, type StackRelease } from "../support/releaseStack";
import { slowClient, type SlowClientResult } from "../support/slowClient";
import { httpRequest, sleep } from "../support/wait";

// A bound is met when the connection closes at it, give or take a shared machine's delay.
const SLACK_MS = 2500;
// How long a slow client keeps trickling: past the longest bound and its slack, so that a close that
// comes late on a loaded machine is measured, not mistaken for a connection left open.
const TRICKLE_MS = PROXY_TIMEOUTS.readBody * 1000 + SLACK_MS + 1000;

let stack: ReleaseStack;
let serving: StackRelease;

beforeAll(async () => {
  stack = await startReleaseStack(uniqueName("bd-edges"));
  serving = await stack.startRelease();
  await stack.switchTo(serving);
}, 900_000);

afterAll(async () => {
  await stack?.remove();
}, 120_000);

/** Ten slow heads, ten slow bodies and one silent connection against `host:port`, trickling past the longest bound (TRICKLE_MS). */
function slowClients(host: string, port: number): Promise<{ heads: SlowClientResult[]; bodies: SlowClientResult[]; idle: SlowClientResult }> {
  const body = JSON.stringify({ name: "slow", description: "d".repeat(60) });
  const bodyHead = `POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const run = (head: string, trickle: string) => slowClient(host, port, { head, trickle, byteEveryMs: 500, maxMs: TRICKLE_MS });
  return Promise.all([
    Promise.all(Array.from({ length: 10 }, () => run("", `GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${"x".repeat(60)}`))),
    Promise.all(Array.from({ length: 10 }, () => run(bodyHead, body))),
    run("", ""),
  ]).then(([heads, bodies, idle]) => ({ heads, bodies, idle }));
}

function expectClosedAt(results: SlowClientResult[], boundSeconds: number, status: number | undefined): void {
  for (const result of results) {
    expect(result.status, result.received.slice(0, 200)).toBe(status);
    expect(result.closedAfterMs, "still open when the client gave up").toBeDefined();
    expect(result.closedAfterMs!).toBeGreaterThan(boundSeconds * 1000 - 100);
    expect(result.closedAfterMs!).toBeLessThan(boundSeconds * 1000 + SLACK_MS);
  }
}

describe("slow clients", () => {
  it("are cut off within their bounds, through the proxy and directly at the image, while the rest are served", async () => {
    const proxied = `http://127.0.0.1:${stack.proxyPort}`;
    const loads = [startLoad(`${proxied}/healthz`, { rps: 10 }), startLoad(`${proxied}/api/v1/items`, { rps: 5, postJson: '{"name": "normal"}' })];
    const [viaProxy, direct] = await Promise.all([slowClients("127.0.0.1", stack.proxyPort), slowClients(serving.address, 8000)]);
    const reports = await Promise.all(loads.map((load) => load.stop()));
    for (const report of reports) {
      expect(report.failed, JSON.stringify(report.failed.slice(0, 3))).toEqual([]);
      expect(report.sent).toBeGreaterThan(60);
      expect(report.p99Ms).toBeLessThan(1000);
    }
    // Through the proxy: Go's HTTP server answers a late head itself (400) and closes; a late body gets
    // the backend's 408 (its deadline comes first) once the proxy's read timeout ends the request.
    expectClosedAt(viaProxy.heads, PROXY_TIMEOUTS.readHeader, 400);
    expectClosedAt(viaProxy.bodies, PROXY_TIMEOUTS.readBody, 408);
    expect(viaProxy.bodies[0]!.received).toContain("Content-Security-Policy: default-src 'none'");
    expectClosedAt([viaProxy.idle], PROXY_TIMEOUTS.readHeader, undefined);
    // Directly: the backend's own deadlines, each answered with 408 and its security headers.
    expectClosedAt(direct.heads, deadlines.headSeconds, 408);
    expectClosedAt(direct.bodies, deadlines.bodySeconds, 408);
    expect(direct.heads[0]!.received.toLowerCase()).toContain("content-security-policy: default-src 'none'");
    expectClosedAt([direct.idle], deadlines.keepAliveSeconds, undefined);
  }, 120_000);
});

describe("framing at the image and through the proxy", () => {
  const raw = (host: string, port: number, request: string) => slowClient(host, port, { head: request, trickle: "", maxMs: 5000 });

  it("refuses two Hosts, checks an absolute-form target's host, refuses unknown transfer codings, and answers HEAD", async () => {
    const cases: [string, number, number][] = [
      ["GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: evil.example.net\r\n\r\n", 400, 400],
      ["GET http://evil.example.net/healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 400, 400],
      ["POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", 501, 501],
      ["HEAD /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 200, 200],
      ["GET /api/v1/items/01 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", 422, 422],
    ];
    for (const [request, direct, proxied] of cases) {
      const [atImage, atProxy] = await Promise.all([raw(serving.address, 8000, request), raw("127.0.0.1", stack.proxyPort, request)]);
      expect([atImage.status, atProxy.status], request).toEqual([direct, proxied]);
      if (request.startsWith("HEAD")) expect(atImage.received.endsWith("\r\n\r\n")).toBe(true);
    }
  }, 60_000);
});

describe("the proxy's pids limit", () => {
  it("is the engine's own, set by the route: not RLIMIT_NPROC, which every process of the user on the host counts against", async () => {
    const inspected = JSON.parse((await docker(["container", "inspect", stack.proxyName])).stdout)[0] as { HostConfig: { PidsLimit: number; Ulimits: unknown[] | null } };
    expect(inspected.HostConfig.PidsLimit).toBe(proxyProfile.resources.pids);
    expect(inspected.HostConfig.Ulimits ?? []).toEqual([]);
  });
});

async function itemCount(base: string): Promise<number> {
  return (JSON.parse((await httpRequest(`${base}/api/v1/items?limit=1`)).body) as { total: number }).total;
}

/** The requests a load saw fail, but for answers of a status in `allowed`: none may remain (no reset, no timeout, no other status). */
function expectAnswered(report: LoadReport, allowed: number[] = []): void {
  const others = report.failed.filter((sample: LoadSample) => !allowed.includes(sample.status ?? 0));
  expect(others, JSON.stringify(others.slice(0, 5))).toEqual([]);
}

/** When the proxy's resumable configuration was last written: the route writes it on a reload only. */
async function configWrittenAt(): Promise<string> {
  return (await docker(["exec", stack.proxyName, "stat", "-c", "%y", "/config/caddy/autosave.json"])).stdout.trim();
}

async function containerState(name: string): Promise<string> {
  return (JSON.parse((await docker(["container", "inspect", name])).stdout) as { State: { Status: string } }[])[0]!.State.Status;
}

describe("release switches under load", () => {
  it("leave every request answered, none reset: the proxy is never reloaded, and the switch stops the old release", async () => {
    const proxied = `http://127.0.0.1:${stack.proxyPort}`;
    const before = await itemCount(proxied);
    const loadedAt = await configWrittenAt();
    const loads = [startLoad(`${proxied}/version`, { rps: 40 }), startLoad(`${proxied}/api/v1/items`, { rps: 20, postJson: '{"name": "during a switch"}' })];
    const served = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const next = await stack.startRelease();
      await stack.switchTo(next);
      // The switch itself stopped the release that served (SIGTERM, drained); Pulumi removes it later.
      expect(await containerState(serving.name)).toBe("exited");
      await stack.deleteRelease(serving);
      served.add(serving.containerId.slice(0, 12));
      serving = next;
    }
    await sleep(1000);
    const [reads, writes]: LoadReport[] = await Promise.all(loads.map((load) => load.stop()));
    expectAnswered(reads!);
    expectAnswered(writes!);
    expect(reads!.sent).toBeGreaterThan(300);
    expect(writes!.sent).toBeGreaterThan(150);
    // Every POST was answered 201 and stored once.
    expect(writes!.ok).toBe(writes!.sent);
    expect((await itemCount(proxied)) - before).toBe(writes!.ok);
    // Eight switches, and Caddy was given no configuration: the name moved, not the proxy.
    expect(await configWrittenAt()).toBe(loadedAt);
    const releases = new Set(reads!.samples.map((sample) => sample.release));
    expect(releases.size).toBeGreaterThanOrEqual(9);
    expect([...served].every((id) => releases.has(id))).toBe(true);
    expect((await httpRequest(`${proxied}/version`)).body).toContain(serving.containerId.slice(0, 12));
  }, 600_000);

  it("answer or refuse cleanly when the release that serves is stopped under load: no reset from the drain", async () => {
    const proxied = `http://127.0.0.1:${stack.proxyPort}`;
    const before = await itemCount(proxied);
    // A client budget past the proxy's try duration: every request is answered by the proxy, one way or the other.
    const options = { timeoutMs: 15_000 };
    const loads = [startLoad(`${proxied}/version`, { rps: 40, ...options }), startLoad(`${proxied}/api/v1/items`, { rps: 20, postJson: '{"name": "during a stop"}', ...options })];
    await sleep(1000);
    // SIGTERM to the release the proxy routes to: it drains, closes its listener and exits, and only
    // then does a new one start. Refused connections are retried (every method) for the proxy's try duration.
    await stack.deleteRelease(serving);
    serving = await stack.startRelease();
    await stack.switchTo(serving);
    await sleep(1000);
    const [reads, writes]: LoadReport[] = await Promise.all(loads.map((load) => load.stop()));
    // What was not served is the proxy's own 502 (JSON, security headers), after 5 s of retrying; nothing reset.
    for (const report of [reads!, writes!]) {
      expectAnswered(report, [502]);
      expect(report.ok).toBeGreaterThan(report.sent / 2);
    }
    // A POST the proxy answered 502 was never sent on: only the 201s were stored.
    expect((await itemCount(proxied)) - before).toBe(writes!.ok);
  }, 300_000);
});
