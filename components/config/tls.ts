/**
 * The rules of `proxy.*` and `tlsPrivateKey` that span keys or depend on the stack's role: what each
 * TLS mode needs and refuses, which ports it allows, and prod's duty to choose. Pure: no Pulumi
 * runtime. No message quotes the private key.
 */
import { terminatesTls, type TlsMode } from "../contract";
import { caRootProblem, checkCertificate } from "../proxy/certificates";
import type { ConfigProblem } from "./fixes";
import type { StackConfig } from "./schema";

/** The fix command for a key (set, or rm). */
type Fix = (path: readonly PropertyKey[], action?: "set" | "rm") => string;

const MODE = ["proxy", "tls", "mode"];

/** The raw value at `path` of the config as the engine handed it over. */
function rawAt(input: Record<string, unknown>, path: readonly string[]): unknown {
  let node: unknown = input;
  for (const key of path) {
    if (node === null || typeof node !== "object" || Array.isArray(node)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * A `service.hostPort` below 1024 without TLS at the proxy. Checked on the raw config, before the
 * schema, so it is reported together with everything else that is wrong: only a TLS mode makes that
 * port the HTTP one that redirects and answers ACME challenges (the engine publishes it; the proxy
 * keeps listening unprivileged inside its container).
 */
export function privilegedPortProblem(input: Record<string, unknown>, fix: Fix): ConfigProblem | undefined {
  const raw = rawAt(input, ["service", "hostPort"]);
  const port = typeof raw === "string" && /^\d+$/.test(raw.trim()) ? Number(raw) : raw;
  const mode = rawAt(input, MODE);
  if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port >= 1024) return undefined;
  if (typeof mode === "string" && terminatesTls(mode as TlsMode)) return undefined;
  return {
    path: ["service", "hostPort"],
    message:
      "is below 1024, which only a stack whose proxy terminates TLS may publish (proxy.tls.mode acme, certificate or internal: " +
      "it is then the HTTP port that redirects to HTTPS and answers ACME challenges); use 1024-65535",
    fix: fix(["service", "hostPort"]),
  };
}

/** The commands for each mode a prod stack may choose. */
function prodChoices(stack: string): string {
  const set = (mode: string, why: string) => `pulumi config set --stack ${stack} --path 'proxy.tls.mode' ${mode.padEnd(11)}   # ${why}`;
  return [
    set("acme", "Caddy gets and renews a certificate for proxy.domain (Let's Encrypt by default)"),
    set("certificate", "your chain in proxy.tls.certificate, its key in the secret tlsPrivateKey"),
    set("upstream", "TLS ends at your own load balancer in front; the proxy serves HTTP"),
  ].join("\n         or ");
}

/** Every problem of the TLS settings of a config the schema accepted; `input` is the raw config (what was set explicitly). */
export function tlsProblems(config: StackConfig, input: Record<string, unknown>, fix: Fix, stack: string, now: Date): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const problem = (path: PropertyKey[], message: string, command: string) => problems.push({ path, message, fix: command });
  const { mode, acme, certificate } = config.proxy.tls;
  const set = (path: string[]) => rawAt(input, path) !== undefined;
  const atProxy = terminatesTls(mode);

  if (config.environment === "prod" && (mode === "off" || mode === "internal")) {
    const what = set(MODE) ? `is ${mode}` : "is not set (off, plain HTTP, is the default)";
    const why = mode === "internal" ? ": Caddy's internal CA is trusted by no client" : "";
    problem(MODE, `${what}, but a prod stack must choose how its TLS ends: acme, certificate or upstream${why}`, prodChoices(stack));
  }
  if (atProxy && config.proxy.domain === undefined) {
    problem(["proxy", "domain"], `is required when proxy.tls.mode is ${mode}: it is the name the certificate is for`, fix(["proxy", "domain"]));
  }
  if (mode === "off" && set(["proxy", "domain"])) {
    problem(["proxy", "domain"], "only applies when TLS is on, at the proxy or at a load balancer in front (proxy.tls.mode is off)", fix(["proxy", "domain"], "rm"));
  }
  if (!atProxy && set(["proxy", "httpsPort"])) {
    problem(["proxy", "httpsPort"], `only applies when the proxy terminates TLS (proxy.tls.mode is ${mode})`, fix(["proxy", "httpsPort"], "rm"));
  }
  if (atProxy && config.proxy.httpsPort === config.service.hostPort) {
    problem(["proxy", "httpsPort"], "is also service.hostPort; HTTPS and plain HTTP need a port each", fix(["proxy", "httpsPort"]));
  }

  if (mode !== "acme" && set(["proxy", "tls", "acme"])) {
    problem(["proxy", "tls", "acme"], `only applies to proxy.tls.mode acme (it is ${mode})`, fix(["proxy", "tls", "acme"], "rm"));
  } else if (mode === "acme" && acme.caRoot !== undefined) {
    const bad = caRootProblem(acme.caRoot);
    if (bad !== undefined) problem(["proxy", "tls", "acme", "caRoot"], bad, fix(["proxy", "tls", "acme", "caRoot"]));
  }

  if (mode !== "certificate") {
    if (certificate !== undefined) problem(["proxy", "tls", "certificate"], `only applies to proxy.tls.mode certificate (it is ${mode})`, fix(["proxy", "tls", "certificate"], "rm"));
    if (config.tlsPrivateKey !== undefined) problem(["tlsPrivateKey"], `is set but proxy.tls.mode is ${mode}, not certificate; remove it`, fix(["tlsPrivateKey"], "rm"));
    return problems;
  }
  if (certificate === undefined) {
    problem(["proxy", "tls", "certificate"], "is required when proxy.tls.mode is certificate: the certificate chain, leaf first (PEM)", fix(["proxy", "tls", "certificate"]));
  }
  if (config.tlsPrivateKey === undefined) {
    problem(["tlsPrivateKey"], "is required when proxy.tls.mode is certificate: the private key of proxy.tls.certificate (PEM)", fix(["tlsPrivateKey"]));
  }
  if (certificate !== undefined) {
    const found = checkCertificate(certificate, config.tlsPrivateKey, config.proxy.domain, now);
    for (const message of found.certificate) problem(["proxy", "tls", "certificate"], message, fix(["proxy", "tls", "certificate"]));
    for (const message of found.privateKey) problem(["tlsPrivateKey"], message, fix(["tlsPrivateKey"]));
  }
  return problems;
}
