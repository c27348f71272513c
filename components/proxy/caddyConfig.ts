/**
 * The front proxy's configuration, as Caddy 2's native JSON (https://caddyserver.com/docs/json/):
 * one HTTP server that forwards every request to the release that serves. Pure: the route resource
 * (route.ts) loads it into the running proxy through Caddy's admin endpoint, which listens inside
 * the proxy's container only.
 *
 * The answers Caddy writes itself (502/504 when the release does not answer in time) carry the same
 * security headers as the backend's, from the one list both read.
 */
import spec from "../../backend/app/core/security_headers.json";
import deadlines from "../../backend/app/http_deadlines.json";

/** The port the proxy listens on inside its container: unprivileged, as the proxy runs without capabilities. */
export const PROXY_LISTEN_PORT = 8080;
/** Caddy's admin endpoint: inside the proxy's container only, never published. */
export const PROXY_ADMIN = "localhost:2019";
/** Where the proxy keeps its configuration (a volume, Caddy's `XDG_CONFIG_HOME`). */
export const PROXY_CONFIG_DIR = "/config";
/**
 * The configuration a restarted proxy resumes (`caddy run --resume`), relative to the config dir.
 * The route writes it after each switch; Caddy itself never does (`persist: false`), as it runs
 * without the right to write there.
 */
export const PROXY_RESUME_FILE = "caddy/autosave.json";

const READ_HEADER_SECONDS = 5;

/**
 * How long the proxy waits on a client, and keeps an idle connection to the release, in seconds; set
 * around the backend's own deadlines (backend/app/http_deadlines.json):
 * - `readHeader` (Caddy's `read_header_timeout`): a request head, and a new connection's first request;
 *   Go's HTTP server then answers `400 Bad Request` itself and closes the connection.
 * - `readBody` (`read_timeout`: the whole request) outlasts a slow head plus the backend's body deadline,
 *   so the backend's 408 always comes first: Caddy 2.6 answers a body it times out itself mid-proxy with
 *   an empty 200 and a reset. Go reads what is left of a body before writing an answer to it, so a slow
 *   body gets the backend's 408 at `readBody`.
 * - `idle` (`idle_timeout`): a kept-alive client connection between requests.
 * - `upstreamIdle` (the transport's `keep_alive.idle_timeout`) stays under the backend's keep-alive
 *   timeout, so the proxy never sends a request on a connection the release is closing at that moment.
 */
export const PROXY_TIMEOUTS = {
  readHeader: READ_HEADER_SECONDS,
  readBody: READ_HEADER_SECONDS + deadlines.bodySeconds + 1,
  idle: 30,
  upstreamIdle: deadlines.keepAliveSeconds - 3,
} as const;

/** What the proxy forwards to, and how it behaves. */
export interface ProxySettings {
  /** `<container name>:<port>` of the release that serves, on the stack's network. */
  upstream: string;
  /** Send `Strict-Transport-Security` too (staging and production, as the backend does). */
  hsts: boolean;
  /**
   * How long a request may wait for the release to accept its connection, retrying, before the
   * proxy answers 502: it rides out a release's restart without the client seeing it.
   */
  tryDurationSeconds?: number;
  /** How long the previous configuration's connections get to finish when a new one is loaded. */
  gracePeriodSeconds?: number;
}

/** `x-frame-options` -> `X-Frame-Options`: Caddy writes header names as given, so a second spelling would be a second header. */
function canonical(name: string): string {
  return name
    .split("-")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("-");
}

/** The headers of an answer the proxy writes itself, as Caddy takes them: the security headers, and JSON. */
export function securityHeaders(hsts: boolean): Record<string, string[]> {
  const permissions = spec.permissionsPolicyFeatures.map((feature) => `${feature}=()`).join(", ");
  const headers: Record<string, string> = {
    ...spec.headers,
    "permissions-policy": permissions,
    ...(hsts ? { "strict-transport-security": spec.hsts } : {}),
    "content-type": "application/json",
  };
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [canonical(name), [value]]));
}

/** The whole configuration for `settings`. */
export function caddyConfig(settings: ProxySettings): Record<string, unknown> {
  const headers = securityHeaders(settings.hsts);
  const answer = (status: string, detail: string) => ({
    handler: "static_response",
    status_code: status,
    headers,
    body: JSON.stringify({ detail }),
  });
  // Caddy adds `Server: Caddy` to what it forwards; the backend sends no Server header, nor does the proxy.
  const dropServer = { handler: "headers", response: { deferred: true, delete: ["Server"] } };
  const forward = [
    dropServer,
    {
      handler: "reverse_proxy",
      upstreams: [{ dial: settings.upstream }],
      load_balancing: { try_duration: `${settings.tryDurationSeconds ?? 5}s`, try_interval: "250ms" },
      transport: { protocol: "http", keep_alive: { idle_timeout: `${PROXY_TIMEOUTS.upstreamIdle}s` } },
    },
  ];
  return {
    admin: { listen: PROXY_ADMIN, config: { persist: false } },
    logging: { logs: { default: { level: "WARN" } } },
    apps: {
      http: {
        grace_period: `${settings.gracePeriodSeconds ?? 10}s`,
        servers: {
          front: {
            listen: [`:${PROXY_LISTEN_PORT}`],
            protocols: ["h1", "h2"],
            automatic_https: { disable: true },
            read_header_timeout: `${PROXY_TIMEOUTS.readHeader}s`,
            read_timeout: `${PROXY_TIMEOUTS.readBody}s`,
            idle_timeout: `${PROXY_TIMEOUTS.idle}s`,
            routes: [{ handle: forward }],
            errors: { routes: [{ handle: [dropServer, answer("{http.error.status_code}", "the release did not answer")] }] },
          },
        },
      },
    },
  };
}
