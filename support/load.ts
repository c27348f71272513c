/**
 * A bounded, steady load on one URL while something else happens (an update, a rollback): a GET (or
 * a POST) every 1/rps seconds, each on its own, over keep-alive connections as browsers and clients
 * use them; every answer recorded. HTTP or HTTPS (trusting only the CA it is given, the URL's host name
 * in SNI and `Host`, the connection to loopback). Loopback only, and it stops by itself after `maxSeconds`.
 */
import { fork } from "node:child_process";
import http from "node:http";
import https from "node:https";
import path from "node:path";
import { lookupAs } from "./wait";

/** One request of the load and how it ended. */
export interface LoadSample {
  /** When it was sent, ms since the epoch. */
  at: number;
  latencyMs: number;
  status?: number;
  error?: string;
  /** `release` from a `/version` answer: which release served it. */
  release?: string;
  /** With `resendReset`: the GET was reset on a reused connection before any answer, and sent once more. */
  resent?: true;
}

/** What a load saw, once stopped. */
export interface LoadReport {
  samples: LoadSample[];
  sent: number;
  ok: number;
  failed: LoadSample[];
  /** How many GETs were sent once more after a reset (`resendReset`). */
  resent: number;
  p50Ms: number;
  p99Ms: number;
}

/** Options of {@link startLoad}. */
export interface LoadOptions {
  /** Requests per second. */
  rps: number;
  /** Stop after this long even if nobody does; 10 minutes unless told. */
  maxSeconds?: number;
  /** Budget of one request. */
  timeoutMs?: number;
  /** HTTPS: PEM of the CA(s) to trust, and only those. */
  ca?: string | string[];
  /** Connect here instead of resolving the URL's host (a public name served on this machine's loopback). */
  connectTo?: string;
  /** POST this JSON body instead of a GET; then 201 is the answer that counts as served. */
  postJson?: string;
  /**
   * Send a GET once more when the server reset the kept-alive connection it reused before any byte of
   * an answer, as browsers do and RFC 9112 §9.3.1 has clients do for idempotent requests (Caddy closes
   * its idle connections when it loads a configuration: a request sent at that instant was never read).
   * Such samples are marked `resent`; off unless told.
   */
  resendReset?: boolean;
}

const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/** Starts the load on `url` (which must be on loopback); `stop()` waits for the requests under way and reports. */
export function startLoad(url: string, options: LoadOptions): { stop(): Promise<LoadReport> } {
  const target = new URL(url);
  const loopback = ["127.0.0.1", "localhost", "[::1]"];
  const address = options.connectTo ?? target.hostname;
  if (!loopback.includes(address)) throw new Error(`load only goes to loopback, not ${address}`);
  const secure = target.protocol === "https:";
  const agent = secure ? new https.Agent({ keepAlive: true, maxSockets: 8, ...(options.ca === undefined ? {} : { ca: options.ca }) }) : new http.Agent({ keepAlive: true, maxSockets: 8 });
  const lookup = options.connectTo === undefined ? {} : { lookup: lookupAs(options.connectTo) };
  const samples: LoadSample[] = [];
  const pending = new Set<Promise<void>>();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const at = Date.now();
      const sample: LoadSample = { at, latencyMs: 0 };
      const post = options.postJson;
      const headers = post === undefined ? {} : { "content-type": "application/json", "content-length": Buffer.byteLength(post) };
      const send = (): void => {
        const request = (secure ? https : http).request(url, { method: post === undefined ? "GET" : "POST", headers, agent, timeout: options.timeoutMs ?? 5000, ...lookup }, (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () => {
            sample.status = response.statusCode;
            try {
              const release = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { release?: unknown }).release;
              if (typeof release === "string") sample.release = release;
            } catch {
              // Not every path answers JSON.
            }
            finish();
          });
          response.on("error", (error) => {
            sample.error = error.message;
            finish();
          });
        });
        request.end(post);
        request.on("timeout", () => request.destroy(new Error("timeout")));
        request.on("error", (error) => {
          const code = (error as NodeJS.ErrnoException).code;
          if (options.resendReset === true && post === undefined && request.reusedSocket && code === "ECONNRESET" && sample.resent === undefined) {
            sample.resent = true;
            send();
            return;
          }
          sample.error = code ?? error.message;
          finish();
        });
      };
      let done = false;
      function finish(): void {
        if (done) return;
        done = true;
        sample.latencyMs = Date.now() - at;
        samples.push(sample);
        resolve();
      }
      send();
    });
  const timer = setInterval(() => {
    const p = one();
    pending.add(p);
    void p.then(() => pending.delete(p));
  }, 1000 / options.rps);
  const limit = setTimeout(() => clearInterval(timer), (options.maxSeconds ?? 600) * 1000);
  return {
    async stop() {
      clearInterval(timer);
      clearTimeout(limit);
      await Promise.all(pending);
      agent.destroy();
      samples.sort((a, b) => a.at - b.at);
      const latencies = samples.map((s) => s.latencyMs).sort((a, b) => a - b);
      const served = options.postJson === undefined ? 200 : 201;
      const failed = samples.filter((s) => s.status !== served);
      return { samples, sent: samples.length, ok: samples.length - failed.length, failed, resent: samples.filter((s) => s.resent).length, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
    },
  };
}

/**
 * {@link startLoad} from a Node process of its own: whatever the caller's event loop is busy with (an
 * Automation API update parsing its event stream) can delay neither a request nor the clock that
 * times it, so the latencies are the service's.
 */
export async function startLoadInChild(url: string, options: LoadOptions): Promise<{ stop(): Promise<LoadReport> }> {
  const child = fork(path.join(__dirname, "loadChild.ts"), [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      child.once("message", resolve);
      child.once("exit", (code) => reject(new Error(`the load process exited (${code}) before it answered`)));
    });
  const started = next();
  child.send({ url, options });
  await started;
  return {
    async stop() {
      const report = next();
      child.send("stop");
      return (await report) as LoadReport;
    },
  };
}
