/**
 * A slow HTTP client over a raw TCP connection: it sends a request's start at once, then trickles
 * the rest a byte at a time, and records what came back and when the server closed the connection.
 */
import net from "node:net";

/** Options of {@link slowClient}. */
export interface SlowClientOptions {
  /** Sent at once after connecting ("" for none). */
  head: string;
  /** Sent one byte per `byteEveryMs` afterwards ("" for none: the client then only waits). */
  trickle: string;
  byteEveryMs?: number;
  /** Give up (and close) after this long; the result then has no `closedAfterMs`. */
  maxMs: number;
}

/** What a slow client saw. */
export interface SlowClientResult {
  /** Everything received, as latin-1. */
  received: string;
  /** The first status code received, if any. */
  status?: number;
  /** When the server closed (or reset) the connection, in ms after connecting; unset if it never did. */
  closedAfterMs?: number;
}

/** Runs one slow client against `host:port`. */
export function slowClient(host: string, port: number, options: SlowClientOptions): Promise<SlowClientResult> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    const chunks: Buffer[] = [];
    let connectedAt = Date.now();
    let timer: NodeJS.Timeout | undefined;
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(limit);
      socket.destroy();
      const received = Buffer.concat(chunks).toString("latin1");
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(received)?.[1];
      resolve({ received, ...(status === undefined ? {} : { status: Number(status) }), ...(closed ? { closedAfterMs: Date.now() - connectedAt } : {}) });
    };
    const limit = setTimeout(() => finish(false), options.maxMs);
    socket.on("connect", () => {
      connectedAt = Date.now();
      if (options.head !== "") socket.write(options.head, "latin1");
      let next = 0;
      timer = setInterval(() => {
        if (next < options.trickle.length) socket.write(options.trickle.charAt(next++), "latin1");
      }, options.byteEveryMs ?? 500);
    });
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    // A reset after the answer is a close too: what counts is when, and what came before it.
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
  });
}
