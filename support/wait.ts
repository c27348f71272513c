/**
 * Waiting and HTTP utilities for integration tests: poll until a condition holds (with a deadline
 * and a message that says what never happened), HTTP and HTTPS requests that expose every response
 * header (and the served certificate), and free loopback ports.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Options of {@link waitFor}. */
export interface WaitOptions {
  /** Give up after this many milliseconds. */
  timeoutMs: number;
  /** Pause between attempts; 200 ms unless told. */
  intervalMs?: number;
  /** What is awaited, for the error message, e.g. "container to become healthy". */
  what: string;
  /** Errors for which retrying is pointless: they end the wait at once, rethrown as they are. */
  fatal?: (error: unknown) => boolean;
}

/**
 * Calls `probe` until it returns something other than `undefined` and returns that value. A probe
 * that throws counts as "not yet" (unless `fatal` says otherwise); on timeout the error names `what` and the last probe error.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined>, options: WaitOptions): Promise<T> {
  const interval = options.intervalMs ?? 200;
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      if (options.fatal?.(error) === true) throw error;
      lastError = error;
    }
    if (Date.now() >= deadline) {
      const detail = lastError instanceof Error ? `; last error: ${lastError.message}` : "";
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${options.what}${detail}`);
    }
    await sleep(interval);
  }
}

/** A complete HTTP response. Header names are lower case, as Node reports them. */
export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Options of {@link httpRequest}. */
export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** Request body, sent as is. */
  body?: string;
  /** Abort when no complete response arrived in time; 10 s unless told. */
  timeoutMs?: number;
}

/**
 * One HTTP/1.1 request on a fresh connection (no keep-alive, so a server shutting down is not
 * confused by idle pooled sockets). Resolves with any status; rejects on network errors only.
 */
export function httpRequest(url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: options.method ?? "GET",
        headers: { connection: "close", ...options.headers },
        agent: false,
        timeout: options.timeoutMs ?? 10_000,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }),
        );
      },
    );
    request.on("timeout", () => request.destroy(new Error(`no response from ${url} in time`)));
    request.on("error", reject);
    request.end(options.body);
  });
}

/** An HTTPS response, with what the server presented. */
export interface HttpsResponse extends HttpResponse {
  /** SHA-256 fingerprint of the served certificate (`AB:CD:...`) and its DER form, base64. */
  fingerprint: string;
  der: string;
  /** The negotiated ALPN protocol (`h2`, `http/1.1`) of a separate handshake offering both. */
  alpn?: string;
}

/** Options of {@link httpsRequest}. */
export interface HttpsRequestOptions extends HttpRequestOptions {
  /** PEM of the CA(s) to trust; only these. */
  ca: string | string[];
  /** Connect here instead of resolving the URL's host (its name still goes in SNI and `Host`); 127.0.0.1 unless told. */
  connectTo?: string;
  /** Also ask which protocol ALPN picks, offering h2 and http/1.1. */
  alpn?: boolean;
}

/** `lookup` that answers every name with `address`: a host name in the URL, a connection to a test address. */
export function lookupAs(address: string): net.LookupFunction {
  return ((_host: string, options: unknown, callback: (...args: unknown[]) => void) => {
    const all = typeof options === "object" && options !== null && (options as { all?: boolean }).all === true;
    if (all) callback(null, [{ address, family: 4 }]);
    else callback(null, address, 4);
  }) as unknown as net.LookupFunction;
}

/**
 * One HTTPS/1.1 request on a fresh connection, verifying the server against `ca` only and the URL's
 * host name. Resolves with any status; rejects on network and TLS errors.
 */
export async function httpsRequest(url: string, options: HttpsRequestOptions): Promise<HttpsResponse> {
  const target = new URL(url);
  const lookup = lookupAs(options.connectTo ?? "127.0.0.1");
  const response = await new Promise<Omit<HttpsResponse, "alpn">>((resolve, reject) => {
    const request = https.request(
      url,
      { method: options.method ?? "GET", headers: { connection: "close", ...options.headers }, agent: false, ca: options.ca, lookup, timeout: options.timeoutMs ?? 10_000 },
      (res) => {
        const peer = (res.socket as tls.TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8"), fingerprint: peer.fingerprint256, der: peer.raw.toString("base64") }),
        );
      },
    );
    request.on("timeout", () => request.destroy(new Error(`no response from ${url} in time`)));
    request.on("error", reject);
    request.end(options.body);
  });
  if (options.alpn !== true) return response;
  const alpn = await new Promise<string | undefined>((resolve, reject) => {
    const socket = tls.connect({ host: options.connectTo ?? "127.0.0.1", port: Number(target.port || 443), servername: target.hostname, ca: options.ca, ALPNProtocols: ["h2", "http/1.1"] }, () => {
      const picked = socket.alpnProtocol;
      socket.end();
      resolve(typeof picked === "string" ? picked : undefined);
    });
    socket.on("error", reject);
  });
  return { ...response, ...(alpn === undefined ? {} : { alpn }) };
}

/** A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error("the kernel gave no port"))));
    });
  });
}
