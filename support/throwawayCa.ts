/**
 * A certificate authority made for one test and thrown away with it: a CA certificate and server
 * certificates it signs, made with the `openssl` command line (which every machine that runs these
 * tests has; Node's crypto cannot sign certificates).
 */
import { execFile } from "node:child_process";
import { createPublicKey } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { leafDer } from "../components/proxy/tlsProbe";

/** What {@link makeServerCertificate} wrote. */
export interface ServerCertificate {
  /** The CA's certificate (PEM): what a client trusts. */
  caFile: string;
  /** The server's certificate (PEM), signed by the CA. */
  certFile: string;
  /** The server's private key (PEM, unencrypted). */
  keyFile: string;
}

/** Options of {@link makeServerCertificate}. */
export interface ServerCertificateOptions {
  /** The server's common name, e.g. its address. */
  commonName: string;
  /** IP addresses the certificate is valid for (subjectAltName `IP:`). */
  ipAddresses?: readonly string[];
  /** Host names the certificate is valid for (subjectAltName `DNS:`). */
  dnsNames?: readonly string[];
  /** Days of validity from now; 1 unless told. A negative number makes one that has expired. */
  days?: number;
}

/** A CA of a test's own: its certificate, and its key, which stays in the test's folder. */
export interface TestCa {
  caFile: string;
  caKey: string;
  dir: string;
}

function openssl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile("openssl", [...args], (error, _stdout, stderr) =>
      error ? reject(new Error(`openssl ${args[0] ?? ""} failed: ${error.message}\n${stderr.trim()}`)) : resolve(),
    ),
  );
}

// P-256 keys: made in milliseconds, where RSA takes seconds on a busy machine.
const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes a fresh CA in `dir` (which the caller owns and deletes), valid for a day. */
export async function makeCa(dir: string, name: string): Promise<TestCa> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  await openssl([
    "req", "-x509", ...EC, "-keyout", caKey, "-out", caFile, "-days", "1",
    "-subj", `/CN=throwaway test CA for ${name}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return { caFile, caKey, dir };
}

/** A server certificate signed by `ca`, written as `<name>.crt` and `<name>.key` in the CA's folder. */
export async function signServerCertificate(ca: TestCa, name: string, options: ServerCertificateOptions): Promise<{ certFile: string; keyFile: string }> {
  const keyFile = join(ca.dir, `${name}.key`);
  const csrFile = join(ca.dir, `${name}.csr`);
  const certFile = join(ca.dir, `${name}.crt`);
  const extFile = join(ca.dir, `${name}.ext`);
  await openssl(["req", "-new", ...EC, "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${options.commonName}`]);
  // Clients check the subjectAltName, never the common name; an IP address must be listed as `IP:`.
  const names = [...(options.ipAddresses ?? []).map((ip) => `IP:${ip}`), ...(options.dnsNames ?? []).map((dns) => `DNS:${dns}`)];
  writeFileSync(
    extFile,
    [
      `subjectAltName=${names.join(",")}`,
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature",
      "extendedKeyUsage=serverAuth",
      "",
    ].join("\n"),
  );
  await openssl([
    "x509", "-req", "-in", csrFile, "-CA", ca.caFile, "-CAkey", ca.caKey, "-CAcreateserial",
    "-days", String(options.days ?? 1), "-out", certFile, "-extfile", extFile,
  ]);
  return { certFile, keyFile };
}

/**
 * Makes a fresh CA and a server certificate for `options` in `dir` (which the caller owns and
 * deletes). The CA key is left in `dir` too, never in the server's hands.
 */
export async function makeServerCertificate(dir: string, options: ServerCertificateOptions): Promise<ServerCertificate> {
  const ca = await makeCa(dir, options.commonName);
  const { certFile, keyFile } = await signServerCertificate(ca, "server", options);
  return { caFile: ca.caFile, certFile, keyFile };
}

/** What the program tests give `certificate` mode and the fake proxy serves: PEM chains and keys, and the DER (base64) of their leaves. */
export interface ProgramCertificates {
  /** Valid for 30 days: the leaf, then the CA. */
  chain: string;
  key: string;
  der: string;
  /** Valid for 3 days: within promotion.minCertificateDays. */
  shortChain: string;
  shortKey: string;
  shortDer: string;
  /** Another leaf valid for 30 days (a renewal). */
  otherDer: string;
}

/** The {@link ProgramCertificates} for `domain`, signed by a CA made for them in a folder of its own, gone after (with the CA's key). */
export async function programCertificates(name: string, domain: string): Promise<ProgramCertificates> {
  const dir = mkdtempSync(join(tmpdir(), "bd-certs-"));
  try {
    return await signedFor(await makeCa(dir, name), domain);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function signedFor(ca: TestCa, domain: string): Promise<ProgramCertificates> {
  const read = (file: string) => readFileSync(file, "utf8").trim();
  const der = (file: string) => leafDer(read(file)) ?? "";
  const options = (days: number) => ({ commonName: domain, dnsNames: [domain], days });
  const long = await signServerCertificate(ca, "long", options(30));
  const short = await signServerCertificate(ca, "short", options(3));
  const other = await signServerCertificate(ca, "other", options(30));
  return {
    chain: `${read(long.certFile)}\n${read(ca.caFile)}`,
    key: read(long.keyFile),
    der: der(long.certFile),
    shortChain: read(short.certFile),
    shortKey: read(short.keyFile),
    shortDer: der(short.certFile),
    otherDer: der(other.certFile),
  };
}

/**
 * The lines of a PEM private key that carry private material: every base64 line of its body but
 * those made only of bytes of its public key (an EC key's last line is its public point, which the
 * certificate carries too, so finding it there says nothing). What a no-key-in-clear-text check looks for.
 */
export function privateKeyLines(pem: string): string[] {
  const publicDer = createPublicKey(pem).export({ type: "spki", format: "der" });
  return pem
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.length > 0 && !line.startsWith("-----"))
    .filter((line) => !publicDer.includes(Buffer.from(line, "base64")));
}
