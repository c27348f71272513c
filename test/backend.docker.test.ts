/**
 * The backend image on the real Docker engine: what the image holds, the hardened container
 * against a real PostgreSQL, configuration errors, secrets kept out of the image, graceful
 * shutdown with a request in flight, and dependency-layer reuse.
 * Needs the engine, the local base image and PostgreSQL's binaries; fails (never skips) without them.
 */
import { randomBytes } from "node:crypto";
import { appendFileSync, cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hardeningProfile, toDockerRunArgs, withResources } from "../components/hardening";
import {
  LOCAL_PYTHON_BASE,
  buildImage,
  docker,
  imageHistory,
  inspectContainer,
  inspectImage,
  removeContainers,
  removeImages,
  requireDockerEngine,
  uniqueName,
  waitForExit,
  waitForHealthy,
} from "../support/docker";
import { HSTS, SECURITY_HEADERS } from "../support/securityHeaders";
import { startPostgres, type PostgresCluster } from "../support/postgres";
import { freePort, httpRequest, sleep, waitFor } from "../support/wait";

const BACKEND = join(__dirname, "..", "backend");
const PREFIX = uniqueName("backend-image-test");
const TAG = `${PREFIX}:build`;
const BUILD_ARGS = {
  PYTHON_BASE: LOCAL_PYTHON_BASE,
  APP_VERSION: "1.2.3-test",
  GIT_SHA: "0123456789abcdef0123456789abcdef01234567",
  SOURCE_URL: "https://example.invalid/backend-delivery",
};
// A real-looking key that must never surface anywhere but the container's own environment.
const CANARY = `canary${randomBytes(24).toString("hex")}`;
// Tighter than the defaults, to show the limits given to the engine are the ones enforced.
const PROFILE = { ...withResources(hardeningProfile, { memoryMb: 256, pids: 128 }), restart: "no" as const };
const EXPECTED_HEADERS: Record<string, string> = { "strict-transport-security": HSTS, ...SECURITY_HEADERS };

const containers: string[] = [];
const images: string[] = [TAG];
const tempDirs: string[] = [];
let pg: PostgresCluster;

/** A copy of the build context (only what the image needs) in a temp dir the test may modify. */
function copyBackend(): string {
  const dir = mkdtempSync(join(tmpdir(), "backend-ctx-"));
  tempDirs.push(dir);
  for (const entry of ["Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "app"]) {
    cpSync(join(BACKEND, entry), join(dir, entry), {
      recursive: true,
      filter: (source) => !source.includes("__pycache__"),
    });
  }
  return dir;
}

/**
 * Starts the image hardened with the shared profile, on the host network so it reaches the
 * loopback-only PostgreSQL. Secrets travel through the CLI's environment (`--env NAME` without a
 * value), never through argv.
 */
async function runHardened(name: string, env: Record<string, string>, secrets: Record<string, string>): Promise<void> {
  const args = ["run", "--detach", "--name", name, "--network", "host", ...toDockerRunArgs(PROFILE)];
  for (const [key, value] of Object.entries(env)) args.push("--env", `${key}=${value}`);
  for (const key of Object.keys(secrets)) args.push("--env", key);
  containers.push(name);
  await docker([...args, TAG], { env: secrets });
}

beforeAll(async () => {
  await requireDockerEngine(LOCAL_PYTHON_BASE);
  pg = await startPostgres();
  // The canary sits in the CLI's environment during the build too: nothing may carry it inside.
  await buildImage({ context: BACKEND, tag: TAG, buildArgs: BUILD_ARGS, env: { SECRET_KEY: CANARY } });
}, 900_000);

afterAll(async () => {
  await removeContainers(...containers);
  await removeImages(...images);
  await pg?.stop();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("the image", () => {
  it("runs as uid 10001 with an exec-form entry point, OCI labels, and a health check", async () => {
    const image = await inspectImage(TAG);
    expect(image.Config.User).toBe("10001:10001");
    expect(image.Config.Entrypoint).toEqual(["/opt/venv/bin/python", "-m", "app"]);
    expect(image.Config.WorkingDir).toBe("/app");
    expect(Object.keys(image.Config.ExposedPorts ?? {})).toEqual(["8000/tcp"]);
    expect(image.Config.Labels).toMatchObject({
      "org.opencontainers.image.version": "1.2.3-test",
      "org.opencontainers.image.revision": BUILD_ARGS.GIT_SHA,
      "org.opencontainers.image.source": BUILD_ARGS.SOURCE_URL,
    });
    expect(image.Config.Env).toEqual(
      expect.arrayContaining([
        "APP_VERSION=1.2.3-test",
        `GIT_SHA=${BUILD_ARGS.GIT_SHA}`,
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
      ]),
    );
    expect(image.Config.Healthcheck?.Test.slice(0, 2)).toEqual(["CMD", "/opt/venv/bin/python"]);
    expect(image.Config.Healthcheck?.Interval).toBe(5_000_000_000);
  });

  it("holds no package installer, compiler or package cache, and /data belongs to the app user", async () => {
    // Looked at as root, so that unreadable places cannot hide anything.
    const probe = [
      "import importlib.util, json, os, shutil",
      "print(json.dumps({",
      " 'pip': importlib.util.find_spec('pip') is not None,",
      " 'tools': sorted(t for t in ('uv', 'pip', 'pip3', 'gcc', 'cc', 'make') if shutil.which(t)),",
      " 'venvBin': sorted(os.listdir('/opt/venv/bin')),",
      " 'caches': [p for p in ('/root/.cache', '/opt/uv', '/src') if os.path.exists(p)],",
      " 'data': [os.stat('/data').st_uid, os.stat('/data').st_gid],",
      " 'user': open('/etc/passwd').read().count(':10001:10001:'),",
      "}))",
    ].join("\n");
    const { stdout } = await docker(["run", "--rm", "--user", "0:0", "--entrypoint", "/opt/venv/bin/python", TAG, "-c", probe]);
    const facts = JSON.parse(stdout) as { pip: boolean; tools: string[]; venvBin: string[]; caches: string[]; data: number[]; user: number };
    expect(facts.pip).toBe(false);
    expect(facts.tools).toEqual([]);
    expect(facts.venvBin.filter((f) => /^(pip[0-9.]*|uv|uvx)$/.test(f))).toEqual([]);
    expect(facts.caches).toEqual([]);
    expect(facts.data).toEqual([10001, 10001]);
    expect(facts.user).toBe(1);
  }, 60_000);

  it("refuses to build when uv.lock no longer matches pyproject.toml", async () => {
    const dir = copyBackend();
    const pyproject = readFileSync(join(dir, "pyproject.toml"), "utf8");
    const changed = pyproject.replace("dependencies = [", 'dependencies = [\n    "six>=1.16",');
    expect(changed).not.toBe(pyproject);
    writeFileSync(join(dir, "pyproject.toml"), changed);
    const tag = `${PREFIX}:stale-lock`;
    images.push(tag);
    const failed = await buildImage({ context: dir, tag, buildArgs: BUILD_ARGS }).then(
      () => undefined,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    expect(failed).toBeDefined();
    expect(failed).toMatch(/lockfile .*needs to be updated, but `--locked` was provided/);
  }, 300_000);

  it("reuses the dependency layer when only app code changed", async () => {
    const dir = copyBackend();
    appendFileSync(join(dir, "app", "main.py"), `\n# rebuilt ${randomBytes(8).toString("hex")}\n`);
    const tag = `${PREFIX}:touched`;
    images.push(tag);
    const rebuilt = await buildImage({ context: dir, tag, buildArgs: BUILD_ARGS });

    // The classic builder prints each step, then "Using cache" when it reused that step's layer.
    const steps = rebuilt.output.split(/^Step \d+\/\d+ : /m).slice(1);
    const cached = (needle: string): boolean => {
      const step = steps.find((s) => s.startsWith(needle));
      if (step === undefined) throw new Error(`no build step starts with ${needle}`);
      return step.includes("Using cache");
    };
    expect(cached("RUN /opt/uv/bin/uv sync")).toBe(true);
    expect(cached("COPY --from=builder /opt/venv /opt/venv")).toBe(true);
    expect(cached("COPY app ./app")).toBe(false);

    const layerOf = async (ref: string, needle: string): Promise<string> => {
      const row = (await imageHistory(ref)).find((r) => r.createdBy.includes(needle));
      if (row === undefined) throw new Error(`no layer of ${ref} made by ${needle}`);
      return row.id;
    };
    expect(await layerOf(tag, " in ./app")).not.toBe(await layerOf(TAG, " in ./app"));
    expect(await layerOf(tag, " in /opt/venv")).toBe(await layerOf(TAG, " in /opt/venv"));
  }, 300_000);
});

describe("the hardened container against PostgreSQL", () => {
  const name = `${PREFIX}-pg`;
  let port: number;
  let base: string;

  beforeAll(async () => {
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    await runHardened(
      name,
      // On the host network: a metrics port of its own, so that none other on this machine is in the way.
      { APP_ENV: "staging", PORT: String(port), METRICS_PORT: String(await freePort()), LOG_LEVEL: "INFO", SHUTDOWN_TIMEOUT_SECONDS: "20" },
      { DATABASE_URL: pg.url(), SECRET_KEY: CANARY },
    );
  }, 60_000);

  it("becomes healthy by its own health check, and ready once the database answers", async () => {
    const state = await waitForHealthy(name, 60_000);
    expect(state.State.Health?.Status).toBe("healthy");
    const ready = await waitFor(
      async () => {
        const r = await httpRequest(`${base}/readyz`);
        return r.status === 200 ? r : undefined;
      },
      { timeoutMs: 30_000, what: "/readyz to answer 200" },
    );
    expect(JSON.parse(ready.body)).toEqual({ status: "ready" });
  }, 120_000);

  it("runs with a read-only root, every capability dropped, no-new-privileges and the limits", async () => {
    const state = await inspectContainer(name);
    expect(state.Config.User).toBe("10001:10001");
    expect(state.HostConfig.ReadonlyRootfs).toBe(true);
    expect(state.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(state.HostConfig.CapAdd ?? []).toEqual([]);
    expect(state.HostConfig.SecurityOpt).toContain("no-new-privileges:true");
    expect(state.HostConfig.Memory).toBe(256 * 1024 * 1024);
    expect(state.HostConfig.PidsLimit).toBe(128);
    expect(Object.keys(state.HostConfig.Tmpfs ?? {}).sort()).toEqual(["/data", "/tmp"]);
    // The kernel agrees: the process really runs as 10001 with no capabilities at all.
    const status = await docker(["exec", name, "/opt/venv/bin/python", "-c", "print(open('/proc/1/status').read())"]);
    expect(status.stdout).toMatch(/^Uid:\s+10001\s+10001\s+10001\s+10001$/m);
    expect(status.stdout).toMatch(/^CapEff:\s+0000000000000000$/m);
    expect(status.stdout).toMatch(/^NoNewPrivs:\s+1$/m);
    const write = await docker(["exec", name, "/opt/venv/bin/python", "-c", "open('/app/x', 'w')"], { allowFailure: true });
    expect(write.code).toBe(1);
    expect(write.stderr).toContain("Read-only file system");
  }, 60_000);

  it("sends the security headers and no Server header on real HTTP responses, errors included", async () => {
    for (const [path, status] of [["/healthz", 200], ["/no-such-route", 404], ["/api/v1/items?limit=0", 422]] as const) {
      const response = await httpRequest(`${base}${path}`);
      expect(response.status).toBe(status);
      for (const [header, value] of Object.entries(EXPECTED_HEADERS)) expect(response.headers[header]).toBe(value);
      expect(response.headers["permissions-policy"]).toContain("camera=()");
      expect(response.headers["permissions-policy"]).toContain("interest-cohort=()");
      expect(response.headers["x-request-id"]).toMatch(/^[0-9a-f]{32}$/);
      expect(response.headers.server).toBeUndefined();
    }
  }, 30_000);

  it("stores and lists items in PostgreSQL", async () => {
    const created = await httpRequest(`${base}/api/v1/items`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "first", description: "from the container test" }),
    });
    expect(created.status).toBe(201);
    expect(await pg.adminQuery("SELECT name || '|' || description FROM items;")).toBe("first|from the container test");
    const listed = await httpRequest(`${base}/api/v1/items`);
    expect(listed.status).toBe(200);
    const page = JSON.parse(listed.body) as { total: number; items: { name: string }[] };
    expect(page.total).toBe(1);
    expect(page.items.map((i) => i.name)).toEqual(["first"]);
  }, 30_000);

  it("finishes a request in flight after SIGTERM, then exits 0", async () => {
    // A table lock held by another session keeps GET /api/v1/items waiting inside the database:
    // a real request, in flight for exactly as long as the test decides.
    const session = await pg.openSession();
    try {
      await session.query("BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;");
      const inFlight = httpRequest(`${base}/api/v1/items`, { timeoutMs: 60_000 });
      await waitFor(
        async () =>
          (await pg.adminQuery("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'backend' AND wait_event_type = 'Lock';")) === "1"
            ? true
            : undefined,
        { timeoutMs: 15_000, what: "the items request to wait on the table lock" },
      );
      await docker(["kill", "--signal", "SIGTERM", name]);
      // Shutting down, but held open by the request: still running well after the signal.
      await sleep(1_500);
      expect((await inspectContainer(name)).State.Running).toBe(true);
      await session.query("COMMIT;");
      const response = await inFlight;
      expect(response.status).toBe(200);
      expect((JSON.parse(response.body) as { total: number }).total).toBe(1);
    } finally {
      await session.close();
    }
    expect(await waitForExit(name, 30_000)).toBe(0);
    const state = await inspectContainer(name);
    expect(state.State.OOMKilled).toBe(false);
  }, 90_000);

  it("never writes the secrets to its logs", async () => {
    const logs = await docker(["logs", name]);
    const text = logs.stdout + logs.stderr;
    expect(text).toContain('"path": "/api/v1/items"');
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain(pg.password);
  }, 30_000);
});

describe("/version", () => {
  it("reports the container's short id as `release` on a bridge network", async () => {
    // How a release container runs behind the front proxy: its own network namespace, so Docker
    // sets its host name to the short id. (On the host network it would be the host's name.)
    const name = `${PREFIX}-release`;
    containers.push(name);
    // /version needs no database: an unreachable one only keeps /readyz at 503.
    const unreachable = ["postgresql://app:", randomBytes(12).toString("hex"), "@127.0.0.1:1/app"].join("");
    await docker(
      ["run", "--detach", "--name", name, ...toDockerRunArgs(PROFILE), "--env", "APP_ENV=staging",
        "--env", "DATABASE_URL", "--env", "SECRET_KEY", TAG],
      { env: { DATABASE_URL: unreachable, SECRET_KEY: CANARY } },
    );
    const id = (await inspectContainer(name)).Id;
    const fetchVersion = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/version').read().decode())";
    const body = await waitFor(
      async () => {
        const r = await docker(["exec", name, "/opt/venv/bin/python", "-c", fetchVersion], { allowFailure: true });
        return r.code === 0 ? r.stdout : undefined;
      },
      { timeoutMs: 30_000, what: "/version to answer inside the container" },
    );
    expect(JSON.parse(body)).toMatchObject({ version: "1.2.3-test", gitSha: BUILD_ARGS.GIT_SHA, release: id.slice(0, 12) });
  }, 60_000);
});

describe("the metrics port", () => {
  it("answers inside the container with one set from two workers, under the read-only root, and is published nowhere", async () => {
    const name = `${PREFIX}-metrics`;
    containers.push(name);
    const digest = (await inspectImage(TAG)).Id;
    const unreachable = ["postgresql://app:", randomBytes(12).toString("hex"), "@127.0.0.1:1/app"].join("");
    // The app's port published on loopback, as someone might; the metrics port (default 9000) is not, and cannot be by -P either.
    await docker(
      ["run", "--detach", "--name", name, ...toDockerRunArgs(PROFILE), "--publish", "127.0.0.1::8000", "--env", "APP_ENV=staging",
        "--env", "WEB_CONCURRENCY=2", "--env", `IMAGE_DIGEST=${digest}`, "--env", "DATABASE_URL", "--env", "SECRET_KEY", TAG],
      { env: { DATABASE_URL: unreachable, SECRET_KEY: CANARY } },
    );
    const fetchIn = (url: string) =>
      docker(["exec", name, "/opt/venv/bin/python", "-c", `import urllib.request; print(urllib.request.urlopen('${url}', timeout=5).read().decode())`], { allowFailure: true });
    // Two requests to the app first, so that the workers have something to count.
    await waitFor(async () => ((await fetchIn("http://127.0.0.1:8000/healthz")).code === 0 ? true : undefined), { timeoutMs: 30_000, what: "the app to answer inside the container" });
    expect((await fetchIn("http://127.0.0.1:8000/version")).code).toBe(0);
    const text = await waitFor(
      async () => {
        const r = await fetchIn("http://127.0.0.1:9000/metrics");
        return r.code === 0 && /backend_http_requests_total\{method="GET",route="\/version",status="2xx"\} 1\.0/.test(r.stdout) ? r.stdout : undefined;
      },
      { timeoutMs: 15_000, what: "the metrics port to count the requests" },
    );
    expect(text).toContain(`backend_build_info{git_sha="${BUILD_ARGS.GIT_SHA}",image_digest="${digest}",version="1.2.3-test"} 1.0`);
    expect(text).toContain("backend_workers 2.0");
    expect(text).toContain("backend_db_pool_max_connections 20.0");
    expect(text).not.toMatch(/pid="/);
    expect(text).not.toContain(CANARY);
    // Each worker's files on the tmpfs /tmp, the only writable path besides /data.
    const files = await docker(["exec", name, "/opt/venv/bin/python", "-c", "import os; print(' '.join(sorted(os.listdir('/tmp/backend-metrics-9000'))))"]);
    expect(new Set(files.stdout.trim().split(" ").filter((f) => f.startsWith("gauge_livesum_"))).size).toBe(2);

    const state = await inspectContainer(name);
    expect(Object.keys(state.NetworkSettings.Ports ?? {}).sort()).toEqual(["8000/tcp"]);
    const published = state.NetworkSettings.Ports?.["8000/tcp"]?.[0]?.HostPort;
    expect(published).toBeDefined();
    expect((await docker(["port", name])).stdout.trim().split("\n")).toEqual([`8000/tcp -> 127.0.0.1:${published}`]);
    // Through the published port, only the app answers, and it has no /metrics.
    const throughApp = await httpRequest(`http://127.0.0.1:${published}/metrics`);
    expect(throughApp.status).toBe(404);
    expect(throughApp.body).not.toContain("backend_build_info");
  }, 90_000);
});

describe("configuration errors", () => {
  it("exits 78 naming DATABASE_URL when it is missing, without echoing the other secret", async () => {
    const name = `${PREFIX}-noconfig`;
    await runHardened(name, { APP_ENV: "production", ALLOWED_HOSTS: "api.example.com" }, { SECRET_KEY: CANARY });
    expect(await waitForExit(name, 30_000)).toBe(78);
    const logs = await docker(["logs", name]);
    const text = logs.stdout + logs.stderr;
    expect(text).toContain("DATABASE_URL");
    expect(text).not.toContain("SECRET_KEY=");
    expect(text).not.toContain(CANARY);
    expect(text).not.toContain("Traceback");
  }, 60_000);
});

describe("secrets stay out of the image", () => {
  it("shows the run-time canary in neither docker history nor docker inspect of the image", async () => {
    const history = await docker(["history", "--no-trunc", TAG]);
    const inspect = await docker(["image", "inspect", TAG]);
    for (const text of [history.stdout, inspect.stdout]) {
      expect(text).toContain("1.2.3-test");
      expect(text).not.toContain(CANARY);
      expect(text).not.toContain(pg.password);
      expect(text).not.toMatch(/SECRET_KEY|DATABASE_URL/);
    }
  }, 30_000);
});
