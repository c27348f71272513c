/**
 * The front proxy's configuration, as Caddy 2's native JSON (https://caddyserver.com/docs/json/):
 * one HTTP server that forwards every request to the release that serves, or, with TLS at the proxy,
 * an HTTPS server that does (HTTP/2, HSTS) and an HTTP one that redirects to it and answers ACME
 * http-01 challenges. Pure: the route resource (route.ts) loads it into the running proxy through
 * Caddy's admin endpoint, which listens inside the proxy's container only.
 *
 * Everything TLS (listeners, the tls app, automation policies, redirects, HSTS) is in
 * {@link frontConfig}, which takes the handlers that reach the upstream as an input: a target that
 * finds its upstreams another way (a Swarm service's tasks) passes its own.
 *
 * The answers Caddy writes itself (502/504 when the release does not answer in time) carry the same
 * security headers as the backend's, from the one list both read.
 */
import spec from "../../backend/app/core/security_headers.json";
import deadlines from "../../backend/app/http_deadlines.json";

/** The port the proxy listens on inside its container: unprivileged, as the proxy runs without capabilities. */
export const PROXY_LISTEN_PORT = 8080;
/** The port the proxy serves HTTPS on inside its container, when it terminates TLS. */
export const PROXY_HTTPS_PORT = 8443;
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
 * Where the proxy keeps its data (a volume, Caddy's `XDG_DATA_HOME`): certificates, the ACME account
 * and the internal CA in {@link CADDY_STORAGE}, the files the route writes in {@link PROXY_TLS_FILES},
 * so that a restarted or replaced proxy keeps them.
 */
export const PROXY_DATA_DIR = "/data";
/** Caddy's own storage inside the data dir (`$XDG_DATA_HOME/caddy`). */
export const CADDY_STORAGE = "caddy";
/** The route's files inside the data dir: a certificate chain and its key, an ACME CA root. */
export const PROXY_TLS_FILES = "tls";

/** One Caddy HTTP handler, as JSON. */
export type Handler = Record<string, unknown>;

/**
 * How the proxy terminates TLS, with the files it reads already inside its container (absolute
 * paths); see route.ts for how they get there.
 */
export interface ProxyTls {
  mode: "acme" | "certificate" | "internal";
  /** The host name served, and the certificate's subject. */
  domain: string;
  /** The host port clients reach HTTPS on: plain HTTP redirects there (named unless 443). */
  httpsPort: number;
  /** `acme`: the directory, the account's email, the CA root that signs the directory's HTTPS. */
  acme?: { directory: string; email?: string; caRootFile?: string };
  /** `certificate`: the chain (leaf first) and its private key. */
  files?: { certificate: string; key: string };
}

/** What {@link frontConfig} wraps around the handlers that reach the upstream. */
export interface FrontSettings {
  /** Send `Strict-Transport-Security` from the proxy's own answers (plain HTTP; over HTTPS it always is). */
  hsts: boolean;
  /** How long the previous configuration's connections get to finish when a new one is loaded. */
  gracePeriodSeconds?: number;
  /** TLS at the proxy; plain HTTP on {@link PROXY_LISTEN_PORT} when unset. */
  tls?: ProxyTls;
}

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
  /** `<serving name>:<port>` on the stack's network, which the release that serves answers to; or every task of a service. */
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
  /** TLS at the proxy; plain HTTP when unset. */
  tls?: ProxyTls;
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

/** Caddy adds `Server: Caddy` to what it forwards; the backend sends no Server header, nor does the proxy. */
const DROP_SERVER: Handler = { handler: "headers", response: { deferred: true, delete: ["Server"] } };

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

/** The whole configuration for `settings`: a reverse proxy to the release (or every task), behind {@link frontConfig}. */
export function caddyConfig(settings: ProxySettings): Record<string, unknown> {
  const forward = [
    DROP_SERVER,
    {
      handler: "reverse_proxy",
      ...upstreamsOf(settings.upstream),
      load_balancing: { try_duration: `${settings.tryDurationSeconds ?? 5}s`, try_interval: "250ms" },
      transport: { protocol: "http", keep_alive: { idle_timeout: `${PROXY_TIMEOUTS.upstreamIdle}s` } },
    },
  ];
  return frontConfig(forward, settings);
}

/**
 * Everything around `forward` (the handlers that reach the upstream): the admin endpoint, logging,
 * the listeners, the proxy's own error answers and, with `settings.tls`, HTTPS with HTTP/2 and HSTS
 * on every answer, the redirect from plain HTTP (308) that also answers ACME http-01 challenges,
 * and the tls app that gets, loads or issues the certificate.
 */
export function frontConfig(forward: readonly Handler[], settings: FrontSettings): Record<string, unknown> {
  const tls = settings.tls;
  const headers = securityHeaders(tls !== undefined || settings.hsts);
  const answer = (status: string, detail: string) => ({
    handler: "static_response",
    status_code: status,
    headers,
    body: JSON.stringify({ detail }),
  });
  // Set on every answer over HTTPS, the release's and the proxy's own; never over plain HTTP.
  const hsts: Handler = { handler: "headers", response: { deferred: true, set: { "Strict-Transport-Security": [spec.hsts] } } };
  return {
    admin: { listen: PROXY_ADMIN, config: { persist: false } },
    logging: { logs: { default: { level: "WARN" } } },
    apps: {
      http: {
        grace_period: `${settings.gracePeriodSeconds ?? 10}s`,
        // The ports Caddy's ACME solver and its own redirects would name: the ones inside the container.
        ...(tls === undefined ? {} : { http_port: PROXY_LISTEN_PORT, https_port: PROXY_HTTPS_PORT }),
        servers: {
          front: {
            listen: [`:${tls === undefined ? PROXY_LISTEN_PORT : PROXY_HTTPS_PORT}`],
            protocols: ["h1", "h2"],
            automatic_https: { disable: true },
            read_header_timeout: `${PROXY_TIMEOUTS.readHeader}s`,
            read_timeout: `${PROXY_TIMEOUTS.readBody}s`,
            idle_timeout: `${PROXY_TIMEOUTS.idle}s`,
            ...(tls === undefined ? {} : { tls_connection_policies: [{}] }),
            routes: [{ handle: tls === undefined ? [...forward] : [hsts, ...forward] }],
            errors: { routes: [{ handle: [DROP_SERVER, answer("{http.error.status_code}", "the release did not answer")] }] },
          },
          ...(tls === undefined ? {} : { redirect: redirectServer(tls) }),
        },
      },
      ...(tls === undefined ? {} : tlsApps(tls)),
    },
  };
}

/**
 * Plain HTTP with TLS at the proxy: every request is sent to HTTPS (308 keeps the method and body),
 * with the security headers but no HSTS. Caddy answers ACME http-01 challenges on this server before
 * any route runs.
 */
function redirectServer(tls: ProxyTls): Record<string, unknown> {
  const port = tls.httpsPort === 443 ? "" : `:${tls.httpsPort}`;
  return {
    listen: [`:${PROXY_LISTEN_PORT}`],
    protocols: ["h1"],
    automatic_https: { disable: true },
    routes: [
      {
        handle: [
          {
            handler: "static_response",
            status_code: 308,
            headers: { ...securityHeaders(false), Location: [`https://{http.request.host}${port}{http.request.uri}`] },
            body: JSON.stringify({ detail: "this service is served over HTTPS" }),
          },
        ],
      },
    ],
  };
}

/** The tls app (and for `internal` the pki app) that gets, loads or issues the certificate for `tls.domain`. */
function tlsApps(tls: ProxyTls): Record<string, unknown> {
  if (tls.mode === "certificate") {
    if (tls.files === undefined) throw new Error("certificate mode needs the chain and key files");
    return { tls: { certificates: { load_files: [{ certificate: tls.files.certificate, key: tls.files.key }] } } };
  }
  if (tls.mode === "internal") {
    return {
      tls: {
        certificates: { automate: [tls.domain] },
        // No OCSP responder behind Caddy's own CA.
        automation: { policies: [{ subjects: [tls.domain], issuers: [{ module: "internal" }], disable_ocsp_stapling: true }] },
      },
      // Caddy would try to add its root to the container's trust store, which it may not write.
      pki: { certificate_authorities: { local: { install_trust: false } } },
    };
  }
  const acme = tls.acme;
  if (acme === undefined) throw new Error("acme mode needs the directory");
  const issuer = {
    module: "acme",
    ca: acme.directory,
    ...(acme.email === undefined ? {} : { email: acme.email }),
    ...(acme.caRootFile === undefined ? {} : { trusted_roots_pem_files: [acme.caRootFile] }),
    // http-01 only, on the port service.hostPort forwards to: the CA asks port 80, which is that one.
    // TLS-ALPN-01 would need the CA to reach port 443, which proxy.httpsPort need not be.
    challenges: { http: { alternate_port: PROXY_LISTEN_PORT }, "tls-alpn": { disabled: true } },
  };
  return { tls: { certificates: { automate: [tls.domain] }, automation: { policies: [{ subjects: [tls.domain], issuers: [issuer] }] } } };
}
