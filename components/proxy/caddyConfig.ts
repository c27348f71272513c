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

/**
 * Every address a DNS name resolves to, looked up again every `refreshSeconds` (Caddy's dynamic `a`
 * upstreams, https://caddyserver.com/docs/json/apps/http/servers/routes/handle/reverse_proxy/dynamic_upstreams/a/):
 * `tasks.<service>` names each task of a Swarm service in `dnsrr` mode. Caddy's default refresh is a
 * minute, far too slow for tasks that come and go; its active health checks do not run for dynamic
 * upstreams, so a task that stops is left by the next lookup and, meanwhile, by the retries.
 */
export interface DynamicUpstream {
  name: string;
  port: number;
  /** 1 s unless told. */
  refreshSeconds?: number;
}

/** What the proxy forwards to, and how it behaves. */
export interface ProxySettings {
  /** `<container name>:<port>` of the release that serves, on the stack's network; or every task of a service. */
  upstream: string | DynamicUpstream;
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

/**
 * The `reverse_proxy` fields that name the upstreams. Retries (`try_duration`) cover every request
 * whose connection could not be made, and GET requests after one was (Caddy's default retry
 * match: a request that may have reached a task is not sent twice unless it is safe to). A task
 * that failed a request is passed over for 2 s, so its neighbours take the retries.
 */
function upstreamsOf(upstream: ProxySettings["upstream"]): Record<string, unknown> {
  if (typeof upstream === "string") return { upstreams: [{ dial: upstream }] };
  return {
    dynamic_upstreams: { source: "a", name: upstream.name, port: String(upstream.port), refresh: `${upstream.refreshSeconds ?? 1}s` },
    health_checks: { passive: { fail_duration: "2s", max_fails: 1 } },
  };
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
      ...upstreamsOf(settings.upstream),
      load_balancing: { try_duration: `${settings.tryDurationSeconds ?? 5}s`, try_interval: "250ms" },
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
            routes: [{ handle: forward }],
            errors: { routes: [{ handle: [dropServer, answer("{http.error.status_code}", "the release did not answer")] }] },
          },
        },
      },
    },
  };
}
