/**
 * TLS as every target's component turns it into resources and outputs, the same for each: whether
 * the proxy terminates it (and then `proxy.domain` is required), the TLS input of the resource that
 * loads the proxy (secret, as it holds `certificate` mode's key), the `url` clients use, and the `tls`
 * output built from the certificate the proxy served.
 */
import * as pulumi from "@pulumi/pulumi";
import { terminatesTls, type TlsRecord } from "../contract";
import type { ServiceTls } from "../backendService";
import type { RouteTls } from "./tlsProbe";
import { tlsRecord } from "./tlsStatus";

/** TLS the proxy terminates: a mode of its own, and the domain it serves. */
export type ProxyTerminated = ServiceTls & { mode: RouteTls["mode"]; domain: string };

/** `tls` when the proxy terminates it, else undefined; `component` names the one that needs the domain. */
export function terminatedAtProxy(component: string, tls: ServiceTls | undefined): ProxyTerminated | undefined {
  if (tls === undefined || !terminatesTls(tls.mode)) return undefined;
  if (tls.domain === undefined || tls.domain === "") throw new Error(`${component}: tls.domain is required with tls.mode ${tls.mode}`);
  return { ...tls, mode: tls.mode, domain: tls.domain };
}

/** The TLS input of the resource that loads the proxy: the key, a secret Output, makes the whole of it secret. */
export function routeTls(tls: ProxyTerminated): pulumi.Output<RouteTls> {
  return pulumi.output(tls.privateKey).apply((privateKey) => ({
    mode: tls.mode,
    domain: tls.domain,
    httpsPort: tls.httpsPort,
    ...(tls.mode === "acme" && tls.acme !== undefined ? { acme: tls.acme } : {}),
    ...(tls.mode === "certificate" && tls.certificate !== undefined ? { certificate: tls.certificate } : {}),
    ...(tls.mode === "certificate" && privateKey !== undefined ? { privateKey } : {}),
  }));
}

/** What clients use: the proxy's own URL, or, with TLS ended by a load balancer in front, the public name over HTTPS. */
export function stackUrl(tls: ServiceTls | undefined, proxyUrl: pulumi.Output<string>): pulumi.Output<string> {
  return tls?.mode === "upstream" && tls.domain !== undefined ? pulumi.output(`https://${tls.domain}`) : proxyUrl;
}

/**
 * The `tls` output: where the proxy terminates TLS, the certificate it served to the verification
 * of its last load (`verifiedAt`, `served`), or, when this update did not load it, what it served at
 * the program's start (`tls.observed`: a renewal since shows there).
 */
export function tlsOutput(tls: ServiceTls | undefined, atProxy: ProxyTerminated | undefined, verifiedAt: pulumi.Output<string>, served: pulumi.Output<string | undefined>): pulumi.Output<TlsRecord> {
  if (atProxy === undefined) return pulumi.output(tlsRecord(tls?.mode ?? "off", tls?.domain, undefined));
  const observed = atProxy.observed !== undefined && "der" in atProxy.observed ? atProxy.observed : undefined;
  return pulumi.all([verifiedAt, served]).apply(([at, der]) => tlsRecord(atProxy.mode, atProxy.domain, observed !== undefined && at < observed.at ? observed.der : der));
}
