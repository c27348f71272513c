/**
 * TLS at the front proxy, the engine's side: the files the proxy reads (a certificate chain and its
 * key, an ACME CA root) as entries of an archive written into its data volume, a probe that asks
 * through the proxy over HTTPS from inside a container on the stack's network (through the Docker
 * API, as the readiness probe does) and reports the certificate it was served, and the reason Caddy
 * logged when it could not get a certificate.
 *
 * The route's dynamic provider carries these functions into its own process (Pulumi serializes
 * them), so they use only Node globals and plain functions: no module-level objects.
 */
import { dockerClient, execIn, type ArchiveEntry, type DockerEndpoint } from "../docker/client";
import { IMAGE_PYTHON } from "../readiness/dockerView";
import { CADDY_STORAGE, PROXY_DATA_DIR, PROXY_TLS_FILES, type ProxyTls } from "./caddyConfig";

/** TLS at the proxy as the route takes it: resolved from stack config, the key in clear (a secret input). */
export interface RouteTls {
  mode: "acme" | "certificate" | "internal";
  domain: string;
  /** The host port clients reach HTTPS on. */
  httpsPort: number;
  acme?: { directory: string; email?: string; caRoot?: string };
  /** `certificate`: the chain, leaf first (PEM). */
  certificate?: string;
  /** `certificate`: its private key (PEM). */
  privateKey?: string;
}

/** What the proxy gets written into its data volume for `tls`, and the configuration that reads it. */
export interface TlsFiles {
  /** Relative to {@link PROXY_DATA_DIR}. */
  entries: ArchiveEntry[];
  /** The files' names in {@link PROXY_TLS_FILES}, so the next switch can remove those it no longer uses. */
  names: string[];
  proxy: ProxyTls;
}

/** `uid:gid` -> numbers. */
export function ownerOf(user: string): { uid: number; gid: number } {
  const [uid, gid] = user.split(":").map((part) => Number(part));
  if (uid === undefined || !Number.isInteger(uid)) throw new Error(`the proxy's user ${JSON.stringify(user)} is not numeric uid:gid`);
  return { uid, gid: gid !== undefined && Number.isInteger(gid) ? gid : uid };
}

/**
 * The files for `tls`, named by a digest of the certificate (or CA root) they belong to: a new
 * certificate is written beside the one that serves, so the proxy swaps from one to the other in
 * one reload, and the previous configuration still finds its own files if it has to come back.
 * Caddy's storage folder is made too, owned by the proxy's user: a fresh volume belongs to root.
 */
export async function tlsFiles(tls: RouteTls, owner: { uid: number; gid: number }): Promise<TlsFiles> {
  const digest = async (text: string) =>
    Buffer.from(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text))).toString("hex").slice(0, 16);
  const entries: ArchiveEntry[] = [
    { name: CADDY_STORAGE, mode: 0o700, ...owner },
    { name: PROXY_TLS_FILES, mode: 0o700, ...owner },
  ];
  const names: string[] = [];
  const file = (name: string, content: string, mode: number): string => {
    entries.push({ name: `${PROXY_TLS_FILES}/${name}`, content, mode, ...owner });
    names.push(name);
    return `${PROXY_DATA_DIR}/${PROXY_TLS_FILES}/${name}`;
  };
  const proxy: ProxyTls = { mode: tls.mode, domain: tls.domain, httpsPort: tls.httpsPort };
  if (tls.mode === "certificate") {
    if (tls.certificate === undefined || tls.privateKey === undefined) throw new Error("certificate mode needs the chain and its private key");
    const id = await digest(tls.certificate);
    proxy.files = { certificate: file(`chain-${id}.pem`, `${tls.certificate.trim()}\n`, 0o644), key: file(`key-${id}.pem`, `${tls.privateKey.trim()}\n`, 0o600) };
  }
  if (tls.mode === "acme") {
    if (tls.acme === undefined) throw new Error("acme mode needs the directory");
    const { directory, email, caRoot } = tls.acme;
    proxy.acme = {
      directory,
      ...(email === undefined ? {} : { email }),
      ...(caRoot === undefined ? {} : { caRootFile: file(`acme-ca-${await digest(caRoot)}.pem`, `${caRoot.trim()}\n`, 0o644) }),
    };
  }
  return { entries, names, proxy };
}

/** The DER form (base64) of the first certificate of a PEM chain: what a handshake reports for it. */
export function leafDer(chain: string): string | undefined {
  const match = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(chain);
  return match?.[1]?.replace(/\s+/g, "");
}

/**
 * One HTTPS GET from inside a container with the standard library only, naming `sni` in the TLS
 * handshake (the container name is what it connects to) and `host` as `Host`. The chain is not
 * verified: the probe reports what was served. Prints one JSON line: the status, the start of the
 * body and the served certificate (DER, base64), or the error. Arguments: address, port, SNI, path,
 * Host header (may be empty), timeout in seconds.
 */
export const TLS_PROBE_SCRIPT = [
  "import base64, http.client, json, socket, ssl, sys",
  "address, port, sni, path, host, timeout = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6])",
  "context = ssl.create_default_context()",
  "context.check_hostname = False",
  "context.verify_mode = ssl.CERT_NONE",
  "class Connection(http.client.HTTPSConnection):",
  "    def connect(self):",
  "        self.sock = context.wrap_socket(socket.create_connection((self.host, self.port), self.timeout), server_hostname=sni)",
  "try:",
  "    connection = Connection(address, port, timeout=timeout, context=context)",
  "    connection.connect()",
  "    certificate = base64.b64encode(connection.sock.getpeercert(binary_form=True) or b'').decode('ascii')",
  "    connection.request('GET', path, headers={'Host': host} if host else {})",
  "    answer = connection.getresponse()",
  "    print(json.dumps({'status': answer.status, 'body': answer.read(65536).decode('utf-8', 'replace'), 'certificate': certificate}))",
  "except Exception as error:",
  "    reason = getattr(error, 'reason', error)",
  "    print(json.dumps({'error': type(error).__name__ + ': ' + str(reason)[:200]}))",
].join("\n");

/** What one HTTPS GET through the proxy got. */
export interface TlsAnswer {
  status: number;
  body: string;
  /** The served certificate, DER, base64. */
  certificate: string;
}

/** Asks HTTPS questions from inside `containerId` (a container with the backend image's Python, on the proxy's network). */
export function tlsProber(containerId: string, endpoint: DockerEndpoint = {}) {
  const docker = dockerClient(endpoint.host, endpoint.sshOpts);
  return {
    async get(address: string, port: number, sni: string, path: string, host: string, timeoutMs: number): Promise<TlsAnswer> {
      const seconds = String(Math.max(0.1, timeoutMs / 1000));
      const result = await execIn(docker, containerId, [IMAGE_PYTHON, "-c", TLS_PROBE_SCRIPT, address, String(port), sni, path, host, seconds], timeoutMs + 2000);
      let answer: { status?: unknown; body?: unknown; certificate?: unknown; error?: unknown };
      try {
        answer = JSON.parse(result.stdout.trim().split("\n").pop() ?? "") as typeof answer;
      } catch {
        throw new Error(`the TLS probe inside the container printed no answer (exit ${result.exitCode}): ${result.stderr.trim().slice(-200)}`);
      }
      if (typeof answer.status === "number" && typeof answer.certificate === "string") {
        return { status: answer.status, body: typeof answer.body === "string" ? answer.body : "", certificate: answer.certificate };
      }
      throw new Error(typeof answer.error === "string" ? answer.error : "the TLS probe inside the container failed");
    },
  };
}

/**
 * Caddy's own reason for not getting a certificate for `domain`, from its JSON log lines: the error
 * of its "could not get certificate from issuer" (or "will retry") line, or undefined when it
 * logged none.
 */
export function obtainFailure(logs: string, domain: string): string | undefined {
  let retry: string | undefined;
  for (const line of logs.split("\n")) {
    if (!line.includes('"tls.obtain"')) continue;
    let entry: { level?: unknown; msg?: unknown; identifier?: unknown; error?: unknown };
    try {
      entry = JSON.parse(line.slice(line.indexOf("{"))) as typeof entry;
    } catch {
      continue;
    }
    if (entry.level !== "error" || typeof entry.error !== "string") continue;
    if (entry.msg === "could not get certificate from issuer" && (entry.identifier === undefined || entry.identifier === domain)) return entry.error;
    if (entry.msg === "will retry" && entry.error.includes(domain)) retry ??= entry.error;
  }
  return retry;
}
