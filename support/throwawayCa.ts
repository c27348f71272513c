/**
 * A certificate authority made for one test server and thrown away with it: a CA certificate and a
 * server certificate it signed, both valid for a day, made with the `openssl` command line (which
 * every machine that runs these tests has; Node's crypto cannot sign certificates).
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

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
}

function openssl(args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile("openssl", [...args], (error, _stdout, stderr) =>
      error ? reject(new Error(`openssl ${args[0] ?? ""} failed: ${error.message}\n${stderr.trim()}`)) : resolve(),
    ),
  );
}

/**
 * Makes a fresh CA and a server certificate for `options` in `dir` (which the caller owns and
 * deletes). The CA key is left in `dir` too, never in the server's hands; P-256 keys, because they
 * are made in milliseconds where RSA takes seconds on a busy machine.
 */
export async function makeServerCertificate(dir: string, options: ServerCertificateOptions): Promise<ServerCertificate> {
  const caKey = join(dir, "ca.key");
  const caFile = join(dir, "ca.crt");
  const keyFile = join(dir, "server.key");
  const csrFile = join(dir, "server.csr");
  const certFile = join(dir, "server.crt");
  const extFile = join(dir, "server.ext");
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  await openssl([
    "req", "-x509", ...ec, "-keyout", caKey, "-out", caFile, "-days", "1",
    "-subj", `/CN=throwaway test CA for ${options.commonName}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  await openssl(["req", "-new", ...ec, "-keyout", keyFile, "-out", csrFile, "-subj", `/CN=${options.commonName}`]);
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
    "x509", "-req", "-in", csrFile, "-CA", caFile, "-CAkey", caKey, "-CAcreateserial",
    "-days", "1", "-out", certFile, "-extfile", extFile,
  ]);
  return { caFile, certFile, keyFile };
}
