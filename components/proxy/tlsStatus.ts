/**
 * What a stack serves over TLS, as data: the `tls` stack output built from the certificate the
 * proxy served, and the one line every run of the program logs (`tls status: {...}`, in `pulumi up`
 * and `pulumi preview`) that the pull-request comment reads back from `pulumi preview --json`. The
 * program writes it with {@link formatTlsStatus}; readers use {@link readTlsStatus}; nobody parses
 * prose. Pure apart from node:crypto's certificate parser.
 */
import { z } from "zod";
import { Fingerprint, TlsMode, terminatesTls, type TlsRecord } from "../contract";
import { formatLogLine, readLogLine } from "../logLine";
import { certificateFacts, factsOfDer, parseCertificates } from "./certificates";
import type { Observation } from "./observe";

/** What starts the status line; everything after it is the status as JSON. */
export const TLS_STATUS_PREFIX = "tls status: ";

/** One certificate as the status tells it. */
const Certificate = z.object({ issuer: z.string(), notAfter: z.iso.datetime(), fingerprint: Fingerprint });

/** A stack's TLS when the program ran. */
export const TlsStatus = z.object({
  mode: TlsMode,
  domain: z.string().optional(),
  /** When the program looked (ISO-8601, UTC): remaining validity counts from here. */
  at: z.iso.datetime(),
  /** The certificate the proxy served then, seen through the proxy. */
  served: Certificate.optional(),
  /** Why none was seen (no release runs yet, the handshake failed), when the proxy terminates TLS. */
  unobserved: z.string().optional(),
  /** `certificate` mode: the chain in `proxy.tls.certificate`, which this update serves. */
  configured: Certificate.optional(),
});
export type TlsStatus = z.infer<typeof TlsStatus>;

/** The status as the one line the program logs. */
export function formatTlsStatus(status: TlsStatus): string {
  return formatLogLine(TLS_STATUS_PREFIX, TlsStatus, status);
}

/** The status in a list of diagnostic messages (any severity), or undefined when none holds one (see logLine.ts). */
export function readTlsStatus(messages: readonly string[]): TlsStatus | undefined {
  return readLogLine(messages, TLS_STATUS_PREFIX, TlsStatus);
}

/** The status's view of a certificate (DER, base64). */
export function certificateOf(der: string): z.infer<typeof Certificate> {
  const { issuer, notAfter, fingerprint } = factsOfDer(der);
  return { issuer, notAfter, fingerprint };
}

/** The status of a stack in `mode`: what was observed at the program's start, and the chain config gives in `certificate` mode. */
export function tlsStatusOf(mode: TlsMode, domain: string | undefined, observed: Observation | undefined, chain: string | undefined): TlsStatus {
  const leaf = mode === "certificate" && chain !== undefined ? parseCertificates(chain)[0] : undefined;
  const configured = leaf === undefined ? undefined : certificateFacts(leaf);
  return {
    mode,
    ...(domain === undefined ? {} : { domain }),
    at: observed?.at ?? new Date().toISOString(),
    ...(observed === undefined ? {} : "der" in observed ? { served: certificateOf(observed.der) } : { unobserved: observed.unobserved }),
    ...(configured === undefined ? {} : { configured: { issuer: configured.issuer, notAfter: configured.notAfter, fingerprint: configured.fingerprint } }),
  };
}

/**
 * The `tls` output: the mode and, where the proxy terminates TLS, the certificate it served (`der`,
 * from a handshake through the proxy). A terminating mode without one is an error: the output must
 * say what is served, never what config asked for.
 */
export function tlsRecord(mode: TlsMode, domain: string | undefined, der: string | undefined): TlsRecord {
  const base = { mode, ...(domain === undefined ? {} : { domain }) };
  if (!terminatesTls(mode)) return base;
  if (der === undefined || der === "") throw new Error(`proxy.tls.mode is ${mode}, but no certificate served by the proxy was observed`);
  return { ...base, ...certificateOf(der) };
}
