/**
 * The readiness probe, as a plain function: polls the backend's readiness URL from outside the
 * container, asks the Docker engine between polls whether the container is still alive, and on
 * success records what it observed (see DESIGN.md, the `readiness` output).
 *
 * This module is also the body of the `ReadinessCheck` dynamic provider, which Pulumi serializes
 * with its closure and runs in a separate Node process. So the functions here must stay
 * serializable: no zod schema values (they hold native bound functions the serializer cannot
 * carry), only Node globals and plain functions. The record is validated with the contract schema
 * where it lands, in `check.ts`; the engine's side of the probe is `dockerView.ts`.
 */
import type { Hardening, Readiness } from "../contract";
import { isRootUser } from "../contract";
import { redact } from "../redact";

/** What the engine says about the container's life. */
export interface ContainerState {
  /** Docker's `State.Status`: created, running, paused, restarting, removing, exited or dead. */
  status: string;
  exitCode: number;
  /** Docker's `State.Health.Status` (starting, healthy, unhealthy); absent without a health check. */
  health?: string;
  /** How often the engine restarted the container under its restart policy. */
  restartCount: number;
}

/** The Docker side of the probe; real ({@link dockerContainerView}) in production, injectable in tests. */
export interface ContainerView {
  state(): Promise<ContainerState>;
  /** The last `lines` log lines, stdout and stderr interleaved. */
  logs(lines: number): Promise<string[]>;
  /** Hardening facts as the engine reports them for the running container. */
  hardening(): Promise<Hardening>;
}

/** Who asks the HTTP questions of the probe, and from where. */
export interface Prober {
  /** One GET with its own time budget: the status and the body, or a rejection saying why none came. */
  get(url: string, timeoutMs: number): Promise<{ status: number; body: string }>;
}

/** One HTTP attempt against the readiness URL. */
export interface ProbeAttempt {
  attempt: number;
  /** Milliseconds since the probe started. */
  atMs: number;
  durationMs: number;
  /** HTTP status, when a response arrived. */
  status?: number;
  /** Why no response arrived (ECONNREFUSED, timeout after N ms, ...). */
  error?: string;
}

/** What to probe and how patiently. */
export interface ProbeOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:8080. */
  url: string;
  /** Readiness path, e.g. /readyz. */
  path: string;
  /** The image digest the container runs (sha256:...); recorded as is. */
  imageDigest: string;
  /** Overall budget; the probe fails with its history when it runs out. */
  timeoutSeconds: number;
  /** Pause between attempts. */
  intervalMs: number;
  /** Consecutive 200 answers needed; any other answer starts the count again. */
  successThreshold: number;
  /** Budget of one HTTP request; defaults to the interval, clamped to 1-5 s. */
  requestTimeoutMs?: number;
  /** How to give the check more time, in the words of whoever set `timeoutSeconds` (a config command). */
  timeoutHint?: string;
  /** Called after every attempt, e.g. to show progress while `pulumi up` waits. */
  onAttempt?: (attempt: ProbeAttempt) => void;
}

/** Attempts kept in an error message: the first few and the latest ones. */
export const HISTORY_LIMIT = 20;
/** Container log lines quoted in a fail-fast error. */
export const LOG_LINES = 20;

/** Why a readiness check failed. */
export type ReadinessFailureReason = "exited" | "restarted" | "unhealthy" | "timeout" | "inspect" | "version";

/** A readiness failure: why, the probe history, and for a dead container its last log lines. */
export interface ReadinessError extends Error {
  readonly name: "ReadinessError";
  readonly reason: ReadinessFailureReason;
  readonly history: ProbeAttempt[];
  readonly logLines: string[];
}

/**
 * A plain `Error` carrying the failure's facts. Not a subclass: Pulumi's closure serializer turns a
 * class into a function whose `super(message)` call leaves `message` unset, and the engine would
 * show the failure as "error: undefined".
 */
export function readinessError(
  message: string,
  reason: ReadinessFailureReason,
  history: ProbeAttempt[],
  logLines: string[] = [],
): ReadinessError {
  return Object.assign(new Error(message), { name: "ReadinessError" as const, reason, history, logLines });
}

/** Whether `error` is a readiness failure (of any reason, or of the one given). */
export function isReadinessError(error: unknown, reason?: ReadinessFailureReason): error is ReadinessError {
  return error instanceof Error && error.name === "ReadinessError" && (reason === undefined || (error as ReadinessError).reason === reason);
}


/** The probed URL: base URL plus readiness path, without a doubled slash. */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, "")}${path.startsWith("/") ? path : `/${path}`}`;
}

/** The history as text lines: the first attempts and the latest, bounded by {@link HISTORY_LIMIT}. */
export function formatHistory(history: readonly ProbeAttempt[]): string {
  const line = (a: ProbeAttempt) =>
    `  #${a.attempt} +${(a.atMs / 1000).toFixed(1)}s ${a.status !== undefined ? `HTTP ${a.status}` : `error ${a.error ?? "unknown"}`} (${a.durationMs} ms)`;
  if (history.length <= HISTORY_LIMIT) return history.map(line).join("\n");
  const head = history.slice(0, 5).map(line);
  const tail = history.slice(history.length - (HISTORY_LIMIT - 5)).map(line);
  return [...head, `  ... ${history.length - HISTORY_LIMIT} more attempts ...`, ...tail].join("\n");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

/** Why a request failed, in the words an operator searches for (ECONNREFUSED, timeout ...). */
function describeFetchError(error: unknown, timeoutMs: number): string {
  if (error instanceof Error) {
    if (error.name === "TimeoutError" || error.name === "AbortError") return `timeout after ${timeoutMs} ms`;
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.code) return cause.code;
    return redact(cause?.message ?? error.message);
  }
  return redact(String(error));
}

/**
 * GETs from this process: for a service this machine reaches directly (tests, benchmarks). The
 * deployed check asks from inside the container instead (dockerView.ts `execProber`).
 */
export function fetchProber(): Prober {
  return {
    async get(url, timeoutMs) {
      const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: "manual" });
      // The body is read so the socket is released.
      return { status: response.status, body: await response.text() };
    },
  };
}

/**
 * Polls `url + path` until `successThreshold` consecutive 200s, failing fast when the engine says
 * the container exited, restarted or turned unhealthy, and with the probe history at the timeout.
 * On success it reads `/version` and the container's hardening facts and returns the record.
 */
export async function probeReadiness(options: ProbeOptions, container: ContainerView, prober: Prober = fetchProber()): Promise<Readiness> {
  const probeUrl = joinUrl(options.url, options.path);
  const shownUrl = redact(probeUrl);
  const requestTimeoutMs = options.requestTimeoutMs ?? Math.min(5000, Math.max(1000, options.intervalMs));
  const started = Date.now();
  const deadline = started + options.timeoutSeconds * 1000;
  const history: ProbeAttempt[] = [];
  let consecutive = 0;
  let initialRestarts: number | undefined;

  const failWithLogs = async (reason: "exited" | "restarted" | "unhealthy", what: string): Promise<never> => {
    const lines = (await container.logs(LOG_LINES).catch((e: unknown) => [`(logs unavailable: ${String(e)})`])).map((line) => redact(line));
    const logText = lines.length > 0 ? lines.map((l) => `  | ${l}`).join("\n") : "  (no log output)";
    throw readinessError(
      `Readiness check of ${shownUrl} failed after ${((Date.now() - started) / 1000).toFixed(1)} s: ${what}.\n` +
        `Last ${lines.length} container log lines:\n${logText}\n` +
        `Probe history (${history.length} attempts):\n${formatHistory(history) || "  (none yet)"}\n` +
        `Fix the cause shown in the logs (often a missing or invalid setting), then run \`pulumi up\` again.`,
      reason,
      history,
      lines,
    );
  };

  for (let attempt = 1; ; attempt++) {
    let state: ContainerState;
    try {
      state = await container.state();
    } catch (error) {
      throw readinessError(
        `Readiness check of ${shownUrl} could not inspect the container: ${redact(String(error))}. ` +
          `Check that the container exists and that the Docker host setting points to its engine.`,
        "inspect",
        history,
      );
    }
    initialRestarts ??= state.restartCount;
    if (state.status === "exited" || state.status === "dead") {
      await failWithLogs("exited", `the container ${state.status} with code ${state.exitCode}`);
    }
    // A restart policy hides a crash loop behind "running"; a restart while probing is a crash.
    if (state.status === "restarting" || state.restartCount > initialRestarts) {
      // A container the engine has just started again reports exit code 0: only a stopped one has a real one.
      const exit = state.status === "running" ? "" : `, last exit code ${state.exitCode}`;
      await failWithLogs("restarted", `the container is crash-looping (restarted ${state.restartCount} times${exit})`);
    }
    if (state.health === "unhealthy") await failWithLogs("unhealthy", "the engine reports the container unhealthy");

    const atMs = Date.now() - started;
    const budget = Math.max(1, Math.min(requestTimeoutMs, deadline - Date.now()));
    const record: ProbeAttempt = { attempt, atMs, durationMs: 0 };
    try {
      record.status = (await prober.get(probeUrl, budget)).status;
    } catch (error) {
      record.error = describeFetchError(error, budget);
    }
    record.durationMs = Date.now() - started - atMs;
    history.push(record);
    options.onAttempt?.(record);
    consecutive = record.status === 200 ? consecutive + 1 : 0;
    if (consecutive >= options.successThreshold) break;

    const timedOut = () =>
      readinessError(
        `Readiness check of ${shownUrl} timed out after ${options.timeoutSeconds} s without ` +
          `${options.successThreshold} consecutive HTTP 200 answers.\n` +
          `Probe history (${history.length} attempts):\n${formatHistory(history)}\n` +
          `Check the service's readiness (its database connection)${options.timeoutHint === undefined ? "" : `, or ${options.timeoutHint}`}.`,
        "timeout",
        history,
      );
    const left = deadline - Date.now();
    if (left <= 0) throw timedOut();
    await sleep(Math.min(options.intervalMs, left));
    // No attempt starts at the deadline: it would have no time left to get an answer.
    if (Date.now() >= deadline - 1) throw timedOut();
  }

  const versionUrl = joinUrl(options.url, "/version");
  let version: string;
  try {
    const answer = await prober.get(versionUrl, requestTimeoutMs);
    const parsed = answer.status === 200 ? (JSON.parse(answer.body) as { version?: unknown }) : {};
    if (typeof parsed.version !== "string" || parsed.version === "") throw new Error(`HTTP ${answer.status}, no "version" string`);
    version = parsed.version;
  } catch (error) {
    throw readinessError(
      `The service is ready but ${redact(versionUrl)} did not return {"version": "..."}: ${describeFetchError(error, requestTimeoutMs)}.`,
      "version",
      history,
    );
  }

  const hardening = await container.hardening();
  if (isRootUser(hardening.user)) {
    throw readinessError(
      `The container runs as root (user ${JSON.stringify(hardening.user)}); the hardening profile requires a non-root user.`,
      "inspect",
      history,
    );
  }
  return { ready: true, imageDigest: options.imageDigest, checkedAt: new Date().toISOString(), url: probeUrl, version, hardening };
}
