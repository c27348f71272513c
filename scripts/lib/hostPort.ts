/**
 * The quick start's choice of `service.hostPort` for a new non-prod stack: a port on 127.0.0.1 that
 * nothing listens on now and that no other stack file of the project claims, so a personal stack
 * beside staging is one command too.
 */
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";

/** Where the search starts and ends: 8080 is what the README's examples use. */
export const HOST_PORT_RANGE = { first: 8080, last: 8179 } as const;

/** `service.hostPort` of every `Pulumi.<stack>.yaml` in `dir` (any project namespace), unreadable files skipped. */
export function claimedHostPorts(dir: string): Set<number> {
  const ports = new Set<number>();
  for (const file of fs.readdirSync(dir)) {
    if (!/^Pulumi\.[^.]+\.ya?ml$/.test(file)) continue;
    let doc: unknown;
    try {
      doc = parseYaml(fs.readFileSync(path.join(dir, file), "utf8"));
    } catch {
      continue;
    }
    const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
    for (const [key, value] of Object.entries(config)) {
      if (!key.endsWith(":service") || value === null || typeof value !== "object") continue;
      const port = Number((value as { hostPort?: unknown }).hostPort);
      if (Number.isInteger(port)) ports.add(port);
    }
  }
  return ports;
}

/** Whether a listener can bind `port` on 127.0.0.1 right now. */
export function isFreeOnLoopback(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** The first port of the range that is free on loopback and claimed by no stack file; undefined when none is. */
export async function chooseHostPort(dir: string, range: { first: number; last: number } = HOST_PORT_RANGE): Promise<number | undefined> {
  const claimed = claimedHostPorts(dir);
  for (let port = range.first; port <= range.last; port++) {
    if (!claimed.has(port) && (await isFreeOnLoopback(port))) return port;
  }
  return undefined;
}
