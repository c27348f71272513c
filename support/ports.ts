/**
 * Where ports appear in what the program registers, for the tests that prove the backend's metrics
 * port is reached by nothing but the stack's own network: no proxy route forwards it, no host port
 * publishes it.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** The backend's `METRICS_PORT` default, read from its settings (backend/app/core/config.py), where it lives. */
export function backendMetricsPortDefault(): number {
  const source = readFileSync(join(__dirname, "..", "backend", "app", "core", "config.py"), "utf8");
  const match = /^\s+METRICS_PORT: int = Field\(default=(\d+),/m.exec(source);
  if (match === null) throw new Error("backend/app/core/config.py no longer declares METRICS_PORT as the tests expect");
  return Number(match[1]);
}

/**
 * Every port named anywhere in `value`: numbers (or digit strings) under a key that names a port
 * (`port`, `releasePort`, `internal`, `external`, ...), and the ports of `host:port` strings
 * (`dial`, `upstream`), with the path to each.
 */
export function portsIn(value: unknown, path = ""): { path: string; port: number }[] {
  if (Array.isArray(value)) return value.flatMap((item, i) => portsIn(item, `${path}[${i}]`));
  if (typeof value === "object" && value !== null) {
    return Object.entries(value as Record<string, unknown>).flatMap(([key, item]) => {
      const here = path === "" ? key : `${path}.${key}`;
      const named = /port$|^internal$|^external$/i.test(key) && /^\d+$/.test(String(item)) ? [{ path: here, port: Number(item) }] : [];
      return [...named, ...portsIn(item, here)];
    });
  }
  if (typeof value === "string") {
    // A host name or IPv4 address, then the port: not `10001:10001` (a uid:gid).
    const hostPort = /^(?:[A-Za-z][\w.-]*|\d+\.\d+\.\d+\.\d+):(\d{2,5})$/.exec(value);
    return hostPort === null ? [] : [{ path, port: Number(hostPort[1]) }];
  }
  return [];
}
