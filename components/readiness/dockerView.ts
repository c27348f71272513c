/**
 * The engine's side of the readiness probe, all through the Docker API, so the probe never assumes
 * that the service is reachable from the machine running `pulumi` (a server over `ssh://`, a port
 * published nowhere): a {@link ContainerView} of the release container, and a {@link Prober} that
 * asks its HTTP questions from inside a container with the image's own Python. Like probe.ts it
 * travels with the serialized dynamic provider: plain functions and `require`d packages only.
 */
import { demuxDockerStream, dockerClient, execIn, type DockerEndpoint } from "../docker/client";
import type { ContainerView, Prober } from "./probe";

/** The backend image's own Python, which its `HEALTHCHECK` uses too (backend/Dockerfile). */
export const IMAGE_PYTHON = "/opt/venv/bin/python";

/**
 * One GET from inside a container, with the standard library only: prints one JSON line with the
 * status and the start of the body, or the error. Arguments: URL, Host header (may be empty),
 * timeout in seconds.
 */
export const PROBE_SCRIPT = [
  "import json, sys, urllib.error, urllib.request",
  "url, host, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])",
  "request = urllib.request.Request(url, headers={'Host': host} if host else {})",
  "try:",
  "    with urllib.request.urlopen(request, timeout=timeout) as answer:",
  "        print(json.dumps({'status': answer.status, 'body': answer.read(65536).decode('utf-8', 'replace')}))",
  "except urllib.error.HTTPError as error:",
  "    print(json.dumps({'status': error.code, 'body': error.read(65536).decode('utf-8', 'replace')}))",
  "except Exception as error:",
  "    reason = getattr(error, 'reason', error)",
  "    print(json.dumps({'error': type(reason).__name__ + ': ' + str(reason)[:200]}))",
].join("\n");

/**
 * A prober that runs each GET inside the container `containerId` (the release itself, or any
 * container on the network it must cross) with the image's Python, naming `host` as `Host`.
 */
export function execProber(containerId: string, endpoint: DockerEndpoint = {}, host = ""): Prober {
  const docker = dockerClient(endpoint.host, endpoint.sshOpts);
  return {
    async get(url, timeoutMs) {
      const seconds = Math.max(0.1, timeoutMs / 1000);
      // The engine gets a little longer than Python's own budget, so Python reports the timeout.
      const result = await execIn(docker, containerId, [IMAGE_PYTHON, "-c", PROBE_SCRIPT, url, host, String(seconds)], timeoutMs + 2000);
      let answer: { status?: unknown; body?: unknown; error?: unknown };
      try {
        answer = JSON.parse(result.stdout.trim().split("\n").pop() ?? "") as typeof answer;
      } catch {
        throw new Error(`the probe inside the container printed no answer (exit ${result.exitCode}): ${result.stderr.trim().slice(-200)}`);
      }
      if (typeof answer.status === "number") return { status: answer.status, body: typeof answer.body === "string" ? answer.body : "" };
      throw new Error(typeof answer.error === "string" ? answer.error : "the probe inside the container failed");
    },
  };
}

/** The engine's view of one container, through dockerode. */
export function dockerContainerView(containerId: string, endpoint: DockerEndpoint = {}): ContainerView {
  const container = dockerClient(endpoint.host, endpoint.sshOpts).getContainer(containerId);
  return {
    async state() {
      const info = await container.inspect();
      return {
        status: info.State.Status,
        exitCode: info.State.ExitCode,
        health: info.State.Health?.Status,
        restartCount: info.RestartCount,
      };
    },
    async logs(lines) {
      const info = await container.inspect();
      const raw = (await container.logs({ stdout: true, stderr: true, follow: false, tail: lines })) as unknown as Buffer;
      const { both } = demuxDockerStream(Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw)), info.Config.Tty);
      return both.split(/\r?\n/).filter((l) => l.length > 0).slice(-lines);
    },
    async hardening() {
      const info = await container.inspect();
      const securityOpts: string[] = info.HostConfig.SecurityOpt ?? [];
      return {
        user: info.Config.User ?? "",
        readOnlyRootFilesystem: info.HostConfig.ReadonlyRootfs === true,
        capabilitiesDropped: [...(info.HostConfig.CapDrop ?? [])],
        noNewPrivileges: securityOpts.some((o) => o === "no-new-privileges" || o === "no-new-privileges:true" || o === "no-new-privileges=true"),
      };
    },
  };
}
