/**
 * Pebble, Let's Encrypt's ACME test server, and pebble-challtestsrv as its DNS, for tests and
 * benchmarks that get certificates for real: Pebble's API listens on an address the proxy's container
 * reaches (the host's Docker bridge address), its HTTPS signed by a CA the test makes (never Pebble's
 * own test certificates), and its validation authority resolves every name to `resolveTo`, where the
 * proxy's HTTP port is published, so an http-01 challenge really goes through the proxy.
 *
 * Caddy 2.6.2 (Debian's) rejects Pebble's date-form Retry-After and then waits 60 s, so Pebble is
 * told to send none (`retryAfter` 0). The certificates Pebble issues chain to a root it makes anew at
 * every start, served by its management API (`issuedRoot`).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as https from "node:https";
import * as os from "node:os";
import * as path from "node:path";
import { makeServerCertificate } from "./throwawayCa";
import { freePort, waitFor } from "./wait";

/** Where `.ci/run` installs the Go-built tools when they are not on PATH. */
const GO_TOOLS = path.join(os.homedir(), ".cache", "go-tools", "bin");

/** A running Pebble and its DNS. */
export interface Pebble {
  /** The ACME directory, e.g. `https://172.17.0.1:14000/dir`. */
  directory: string;
  /** PEM of the CA that signs Pebble's HTTPS: what `proxy.tls.acme.caRoot` takes. */
  caRoot: string;
  /** PEM of the root Pebble issues under (made at its start). */
  issuedRoot(): Promise<string>;
  /** What Pebble has logged so far. */
  log(): string;
  stop(): Promise<void>;
}

/** Options of {@link startPebble}. */
export interface PebbleOptions {
  /** Where Pebble listens: an address the proxy's container reaches (see support/docker.ts `dockerHostAddress`). */
  address: string;
  /** The port its validation authority asks for http-01: where the proxy's HTTP port is published. */
  httpPort: number;
  /** What every name resolves to for the validation authority; 127.0.0.1 unless told. */
  resolveTo?: string;
  /** Validity of the certificates it issues, in seconds; Pebble's default (90 days) unless told. */
  validitySeconds?: number;
}

/** The path of a Go-built tool: on PATH, or where `.ci/run` installs it; throws (never skips) without it. */
export function goTool(name: string): string {
  for (const dir of [...(process.env.PATH ?? "").split(path.delimiter), GO_TOOLS]) {
    const candidate = path.join(dir, name);
    if (dir !== "" && fs.existsSync(candidate)) return candidate;
  }
  throw new Error(
    `${name} is not installed: \`GOBIN=$HOME/.cache/go-tools/bin go install github.com/letsencrypt/pebble/v2/cmd/${name}@v2.10.3\` (bash .ci/run does it)`,
  );
}

/** GET over HTTPS trusting only `ca`. */
function get(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // Pebble refuses a request without a User-Agent, as RFC 8555 lets it.
    const request = https.get(url, { ca, timeout: 5000, headers: { "user-agent": "backend-delivery-tests" } }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
      response.on("error", reject);
    });
    request.on("timeout", () => request.destroy(new Error(`no answer from ${url}`)));
    request.on("error", reject);
  });
}

/** Starts challtestsrv and Pebble; see {@link Pebble}. */
export async function startPebble(options: PebbleOptions): Promise<Pebble> {
  const pebbleBin = goTool("pebble");
  const challBin = goTool("pebble-challtestsrv");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bd-pebble-"));
  const tls = await makeServerCertificate(dir, { commonName: "pebble", ipAddresses: [options.address, "127.0.0.1"], dnsNames: ["localhost"] });
  const [apiPort, managementPort, dnsPort, challManagementPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const config = path.join(dir, "pebble-config.json");
  fs.writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `${options.address}:${apiPort}`,
        managementListenAddress: `${options.address}:${managementPort}`,
        certificate: tls.certFile,
        privateKey: tls.keyFile,
        httpPort: options.httpPort,
        tlsPort: 5001,
        ocspResponderURL: "",
        externalAccountBindingRequired: false,
        retryAfter: { authz: 0, order: 0 },
        keyAlgorithm: "ecdsa",
        ...(options.validitySeconds === undefined ? {} : { profiles: { default: { description: "test", validityPeriod: options.validitySeconds } } }),
      },
    }),
  );
  let output = "";
  const children: ChildProcess[] = [];
  const start = (bin: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess => {
    const child = spawn(bin, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
    children.push(child);
    return child;
  };
  const stop = async () => {
    for (const child of children) {
      if (child.exitCode !== null) continue;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    // DNS only: no challenge servers of its own (the proxy answers), every A query gets resolveTo.
    start(challBin, [
      "-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
      "-dnsserver", `127.0.0.1:${dnsPort}`, "-management", `127.0.0.1:${challManagementPort}`,
      "-defaultIPv4", options.resolveTo ?? "127.0.0.1", "-defaultIPv6", "",
    ], {});
    // No random sleeps before validation, no rejected nonces, no reused authorizations: every order validates.
    start(pebbleBin, ["-config", config, "-dnsserver", `127.0.0.1:${dnsPort}`], { PEBBLE_VA_NOSLEEP: "1", PEBBLE_WFE_NONCEREJECT: "0", PEBBLE_AUTHZREUSE: "0" });
    const ca = fs.readFileSync(tls.caFile, "utf8");
    const directory = `https://${options.address}:${apiPort}/dir`;
    await waitFor(async () => ((await get(directory, ca)).status === 200 ? true : undefined), { timeoutMs: 20_000, what: `Pebble at ${directory}` }).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; Pebble and challtestsrv logged:\n${output.slice(-1500)}`);
    });
    return {
      directory,
      caRoot: ca,
      issuedRoot: async () => (await get(`https://${options.address}:${managementPort}/roots/0`, ca)).body,
      log: () => output,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
