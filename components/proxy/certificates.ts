/**
 * X.509 facts the program needs, read with Node's own parser (node:crypto): the certificate chain,
 * private key and ACME CA root that stack config holds, and the certificate the proxy served. Pure:
 * no Pulumi, no I/O. Nothing here ever puts any part of a private key into a message.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from "node:crypto";

/** What a certificate says about itself, as the `tls` output and the gate use it. */
export interface CertificateFacts {
  subject: string;
  /** e.g. `CN=R11, O=Let's Encrypt, C=US`. */
  issuer: string;
  /** ISO-8601, UTC. */
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the DER form, `AB:CD:...` (what `openssl x509 -fingerprint -sha256` prints). */
  fingerprint: string;
  /** The subjectAltName DNS names. */
  dnsNames: string[];
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** Node writes a distinguished name one attribute a line, most specific last; shown on one line, most specific first. */
function oneLine(name: string): string {
  return name
    .split("\n")
    .filter((part) => part.trim() !== "")
    .reverse()
    .join(", ");
}

/** `validTo` as ISO-8601 (Node 22.10+ also has `validToDate`; the text form parses everywhere). */
function iso(text: string): string {
  const at = Date.parse(text);
  if (Number.isNaN(at)) throw new Error(`unreadable certificate date ${JSON.stringify(text)}`);
  return new Date(at).toISOString().replace(/\.000Z$/, "Z");
}

/** The facts of one certificate. */
export function certificateFacts(certificate: X509Certificate): CertificateFacts {
  const dnsNames = (certificate.subjectAltName ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.startsWith("DNS:"))
    .map((entry) => entry.slice("DNS:".length));
  return {
    subject: oneLine(certificate.subject),
    issuer: oneLine(certificate.issuer),
    notBefore: iso(certificate.validFrom),
    notAfter: iso(certificate.validTo),
    fingerprint: certificate.fingerprint256,
    dnsNames,
  };
}

/** The facts of a certificate in DER form, base64-encoded (what the proxy's TLS probe reports). */
export function factsOfDer(base64: string): CertificateFacts {
  return certificateFacts(new X509Certificate(Buffer.from(base64, "base64")));
}

/** The certificates of a PEM text in order (leaf first for a chain); throws when a block does not parse. */
export function parseCertificates(pem: string): X509Certificate[] {
  return [...pem.matchAll(PEM_CERTIFICATE)].map((match) => new X509Certificate(match[0]));
}

/** Days (fractional) from `now` to `notAfter`; negative once it has passed. */
export function daysLeft(notAfter: string, now: Date): number {
  return (Date.parse(notAfter) - now.getTime()) / 86_400_000;
}

/** What is wrong with `proxy.tls.certificate` and `tlsPrivateKey` for `domain` at `now`; empty when nothing is. */
export interface CertificateProblems {
  /** Problems of the chain (`proxy.tls.certificate`). */
  certificate: string[];
  /** Problems of the key (`tlsPrivateKey`); never quoting it. */
  privateKey: string[];
}

function privateKey(pem: string): KeyObject | undefined {
  try {
    return createPrivateKey(pem);
  } catch {
    // The parser's message can quote the input: never shown.
    return undefined;
  }
}

/**
 * Checks a certificate chain and its key as `certificate` mode needs them: a chain that parses, a
 * leaf valid at `now` that covers `domain`, and a private key (unencrypted PEM) that is the leaf's.
 */
export function checkCertificate(chain: string, key: string | undefined, domain: string | undefined, now: Date): CertificateProblems {
  const problems: CertificateProblems = { certificate: [], privateKey: [] };
  let certificates: X509Certificate[];
  try {
    certificates = parseCertificates(chain);
  } catch {
    problems.certificate.push("does not parse as PEM certificates (-----BEGIN CERTIFICATE----- blocks, leaf first)");
    return problems;
  }
  const leaf = certificates[0];
  if (leaf === undefined) {
    problems.certificate.push("holds no PEM certificate (-----BEGIN CERTIFICATE----- blocks, leaf first)");
    return problems;
  }
  const facts = certificateFacts(leaf);
  if (Date.parse(facts.notAfter) <= now.getTime()) {
    problems.certificate.push(`expired at ${facts.notAfter}; give the renewed chain`);
  } else if (Date.parse(facts.notBefore) > now.getTime()) {
    problems.certificate.push(`is not valid before ${facts.notBefore}`);
  }
  if (domain !== undefined && leaf.checkHost(domain) === undefined) {
    const names = facts.dnsNames.length === 0 ? "no DNS name" : facts.dnsNames.join(", ");
    problems.certificate.push(`does not cover proxy.domain ${domain} (its first certificate is for ${names}); the leaf certificate must come first`);
  }
  if (key === undefined) return problems;
  const parsed = privateKey(key);
  if (parsed === undefined) {
    problems.privateKey.push("is not an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, or the RSA/EC forms)");
  } else if (!leaf.checkPrivateKey(parsed)) {
    problems.privateKey.push("does not match proxy.tls.certificate (it is not the key of its first certificate)");
  }
  return problems;
}

/** What is wrong with `proxy.tls.acme.caRoot`, or undefined when it holds CA certificates. */
export function caRootProblem(pem: string): string | undefined {
  let certificates: X509Certificate[];
  try {
    certificates = parseCertificates(pem);
  } catch {
    return "does not parse as PEM certificates (-----BEGIN CERTIFICATE----- blocks)";
  }
  if (certificates.length === 0) return "holds no PEM certificate (-----BEGIN CERTIFICATE----- blocks)";
  if (!certificates.every((c) => c.ca)) return "is not a CA certificate (basicConstraints CA:TRUE): give the root that signs the ACME server's HTTPS";
  return undefined;
}
