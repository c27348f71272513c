/**
 * Waiting and HTTP utilities for integration tests: poll until a condition holds (with a deadline
 * and a message that says what never happened), plain HTTP requests that expose every response
 * header, and free loopback ports.
 */
import http from "node:http";
import net from "node:net";

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
