// The front proxy's bounds on slow clients, as its configuration states them, set around the
// backend's own deadlines (the one file both read). What the real Caddy does with them is proven in
// test/release.docker.test.ts.
import { describe, expect, it } from "vitest";
import deadlines from "../backend/app/http_deadlines.json";
import { PROXY_TIMEOUTS, caddyConfig } from "../components/proxy/caddyConfig";

const config = caddyConfig({ upstream: "release:8000", hsts: false }) as {
  apps: { http: { servers: { front: Record<string, unknown> & { routes: { handle: Record<string, unknown>[] }[] } } } };
};
const front = config.apps.http.servers.front;

describe("the proxy's timeouts", () => {
  it("are the server's read-header, read and idle timeouts, as Caddy's JSON names them", () => {
    expect([front.read_header_timeout, front.read_timeout, front.idle_timeout]).toEqual(["5s", "14s", "30s"]);
    expect(PROXY_TIMEOUTS).toEqual({ readHeader: 5, readBody: 14, idle: 30, upstreamIdle: 2 });
  });

  it("let the backend's 408 for a late body come first, even after a head as slow as the proxy allows", () => {
    expect(PROXY_TIMEOUTS.readBody).toBeGreaterThan(PROXY_TIMEOUTS.readHeader + deadlines.bodySeconds);
  });

  it("close an idle connection to the release before the release would, so no request meets a closing one", () => {
    const proxy = front.routes[0]!.handle.find((handler) => handler.handler === "reverse_proxy")!;
    expect(proxy.transport).toEqual({ protocol: "http", keep_alive: { idle_timeout: "2s" } });
    expect(PROXY_TIMEOUTS.upstreamIdle).toBeLessThan(deadlines.keepAliveSeconds);
    expect(PROXY_TIMEOUTS.upstreamIdle).toBeGreaterThan(0);
  });

  it("retry only what cannot have reached a release: no retry rule widens Caddy's default", () => {
    const proxy = front.routes[0]!.handle.find((handler) => handler.handler === "reverse_proxy")!;
    // Refused connections are retried for every method within try_duration; after a connection was
    // made, only GET. A POST that may have reached the release is never sent twice.
    expect(proxy.load_balancing).toEqual({ try_duration: "5s", try_interval: "250ms" });
  });
});
