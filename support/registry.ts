/**
 * A throwaway container registry for tests that deliver through a real one: the CNCF distribution
 * registry from `local/registry:2-bookworm` (scripts/build-registry-image.sh), with htpasswd
 * authentication (a random user and password per start), TLS from a CA made for this start alone,
 * deletes enabled, and its storage on a tmpfs that goes with the container.
 *
 * The Docker engine trusts the CA through `/etc/docker/certs.d/<host:port>/ca.crt`, which it reads
 * on every pull and push (no restart). It skips verification altogether for 127.0.0.0/8, one of its
 * default insecure registries (https://docs.docker.com/reference/cli/dockerd/#insecure-registries):
 * start on the Docker bridge's address (`address: await dockerHostAddress()`) where the engine must
 * verify the certificate. Node's own requests here always verify it.
 */
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { docker, inspectContainer, removeContainers, uniqueName } from "./docker";
import { makeServerCertificate } from "./throwawayCa";
import { waitFor } from "./wait";

/** The local registry image that stands in for the official `registry:2`. */
export const LOCAL_REGISTRY_IMAGE = process.env.REGISTRY_IMAGE ?? "local/registry:2-bookworm";

/** Where the Docker engine (running as root) looks for a registry's CA: `<dir>/<host:port>/ca.crt`. */
export const DOCKER_CERTS_DIR = "/etc/docker/certs.d";

/** The media types of an image manifest or index, Docker's and OCI's, as a client asks for them. */
export const MANIFEST_MEDIA_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
] as const;

/** Options of {@link startRegistry}. */
export interface StartRegistryOptions {
  /** Image to run; {@link LOCAL_REGISTRY_IMAGE} unless told. */
  image?: string;
  /**
   * Host address to publish the registry on, named in `server` and in the certificate; 127.0.0.1
   * unless told. The engine verifies TLS only outside 127.0.0.0/8 (see the module comment).
   */
  address?: string;
}

/** A running throwaway registry. */
export interface Registry {
  /** `<address>:<port>`: the registry part of image references and what `docker login` names. */
  server: string;
  /** The only user the registry accepts, random per start. */
  username: string;
  /** That user's password, random per start. */
  password: string;
  /** The throwaway CA's certificate (PEM) that signed the registry's certificate. */
  caFile: string;
  /** The registry container's name. */
  container: string;
  /**
   * The `Docker-Content-Digest` of a manifest or index (`reference` a tag or a digest), asked of the
   * registry's HTTP API with the CA and the credentials; undefined when the registry does not have it.
   */
  manifestDigest(repository: string, reference: string): Promise<string | undefined>;
  /** Deletes a manifest (and the tags pointing at it) so that its digest is gone from the registry. */
  deleteManifest(repository: string, digest: string): Promise<void>;
  /** A manifest's bytes and media type (`reference` a tag or a digest). */
  getManifest(repository: string, reference: string): Promise<{ mediaType: string; body: Buffer }>;
  /** Stores a manifest under a tag, as a client that pushes does. */
  putManifest(repository: string, tag: string, mediaType: string, body: Buffer): Promise<void>;
  /** A blob's bytes. */
  getBlob(repository: string, digest: string): Promise<Buffer>;
  /** Uploads a blob (one monolithic upload) and returns its digest. */
  putBlob(repository: string, content: Buffer): Promise<string>;
  /** Removes the container, its storage, the engine's trust of the CA and the files. Safe to call twice. */
  stop(): Promise<void>;
}

const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^\w[\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** Starts a registry and waits until it answers. Call `stop()` when done (e.g. in `afterAll`). */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<Registry> {
  const image = options.image ?? LOCAL_REGISTRY_IMAGE;
  const address = options.address ?? "127.0.0.1";
  const container = uniqueName("registry");
  const username = `user-${randomBytes(4).toString("hex")}`;
  const password = randomBytes(24).toString("hex");
  const runAs = await imageUser(image);

  // The parent is private; the mounted part is readable by the registry's own uid inside the
  // container without handing files to that uid on the host (where it may belong to someone else).
  const dir = mkdtempSync(join(tmpdir(), "registry-test-"));
  const caDir = join(dir, "ca");
  const mounted = join(dir, "registry");
  mkdirSync(caDir, { mode: 0o700 });
  mkdirSync(mounted, { mode: 0o755 });
  let certsDir: string | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await removeContainers(container);
    if (certsDir !== undefined) rmSync(certsDir, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const tls = await makeServerCertificate(caDir, {
      commonName: address,
      ipAddresses: [...new Set([address, "127.0.0.1"])],
      dnsNames: ["localhost"],
    });
    copyFileSync(tls.certFile, join(mounted, "tls.crt"));
    copyFileSync(tls.keyFile, join(mounted, "tls.key"));
    writeFileSync(join(mounted, "htpasswd"), await bcryptHtpasswd(image, username, password));
    // JSON is YAML: the registry reads this as its config.yml.
    const config = {
      version: "0.1",
      log: { level: "warn", accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: "/var/lib/docker-registry" },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: {
        addr: ":5000",
        tls: { certificate: "/etc/docker/registry/tls.crt", key: "/etc/docker/registry/tls.key" },
        headers: { "X-Content-Type-Options": ["nosniff"] },
      },
      auth: { htpasswd: { realm: container, path: "/etc/docker/registry/htpasswd" } },
    };
    writeFileSync(join(mounted, "config.yml"), `${JSON.stringify(config, null, 2)}\n`);
    for (const file of ["tls.crt", "tls.key", "htpasswd", "config.yml"]) chmodSync(join(mounted, file), 0o644);

    await docker([
      "run", "--detach", "--name", container,
      "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
      "--memory", "256m", "--pids-limit", "256",
      "--tmpfs", `/var/lib/docker-registry:rw,noexec,nosuid,size=1g,uid=${runAs.uid},gid=${runAs.gid},mode=0700`,
      "--volume", `${mounted}:/etc/docker/registry:ro`,
      "--publish", `${address}::5000`,
      image,
    ]);
    const published = (await docker(["port", container, "5000/tcp"])).stdout.trim().split("\n")[0] ?? "";
    const port = Number(published.slice(published.lastIndexOf(":") + 1));
    if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot read the registry's published port from \`docker port\`: ${published}`);
    const server = `${address}:${port}`;

    certsDir = join(DOCKER_CERTS_DIR, server);
    try {
      mkdirSync(certsDir, { recursive: true });
      copyFileSync(tls.caFile, join(certsDir, "ca.crt"));
    } catch (error) {
      throw new Error(`cannot make the Docker engine trust the registry's CA in ${certsDir} (run the tests as root): ${(error as Error).message}`, { cause: error });
    }

    const ca = readFileSync(tls.caFile);
    const request = (method: string, path: string, credentials: boolean, body?: { type: string; content: Buffer }): Promise<RegistryAnswer> =>
      registryRequest(server, ca, method, path, credentials ? { username, password } : undefined, body);
    const expectStatus = (answer: RegistryAnswer, status: number, what: string): RegistryAnswer => {
      if (answer.status !== status) throw new Error(`registry ${server} answered ${answer.status} to ${what}: ${answer.body.slice(0, 300)}`);
      return answer;
    };

    // An unauthenticated /v2/ answers 401 once the registry serves TLS with its certificate.
    await waitFor(
      async () => {
        const state = await inspectContainer(container);
        if (!state.State.Running) {
          const logs = await docker(["logs", "--tail", "30", container], { allowFailure: true });
          throw new RegistryExited(`registry container ${container} exited ${state.State.ExitCode}:\n${logs.stdout}${logs.stderr}`);
        }
        return (await request("GET", "/v2/", false)).status === 401 ? true : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 100, what: `registry ${server} to answer`, fatal: (error) => error instanceof RegistryExited },
    );

    return {
      server,
      username,
      password,
      caFile: tls.caFile,
      container,
      async manifestDigest(repository, reference) {
        const answer = await request("HEAD", manifestPath(repository, reference), true);
        if (answer.status === 404) return undefined;
        const digest = answer.headers["docker-content-digest"];
        if (answer.status !== 200 || typeof digest !== "string") {
          throw new Error(`registry ${server} answered ${answer.status} to HEAD of ${repository}:${reference}, without a Docker-Content-Digest`);
        }
        return digest;
      },
      async deleteManifest(repository, digest) {
        if (!DIGEST.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
        const answer = await request("DELETE", manifestPath(repository, digest), true);
        if (answer.status !== 202) throw new Error(`registry ${server} answered ${answer.status} to DELETE of ${repository}@${digest}: ${answer.body}`);
      },
      async getManifest(repository, reference) {
        const answer = expectStatus(await request("GET", manifestPath(repository, reference), true), 200, `GET of ${repository}:${reference}`);
        return { mediaType: String(answer.headers["content-type"]), body: answer.raw };
      },
      async putManifest(repository, tag, mediaType, body) {
        expectStatus(await request("PUT", manifestPath(repository, tag), true, { type: mediaType, content: body }), 201, `PUT of ${repository}:${tag}`);
      },
      async getBlob(repository, digest) {
        if (!REPOSITORY.test(repository) || !DIGEST.test(digest)) throw new Error(`not a repository and digest: ${repository}@${digest}`);
        let answer = await request("GET", `/v2/${repository}/blobs/${digest}`, true);
        // The registry may send a blob from elsewhere; this one serves it itself.
        if (answer.status === 307 && typeof answer.headers.location === "string") answer = await request("GET", new URL(answer.headers.location, `https://${server}`).pathname, true);
        return expectStatus(answer, 200, `GET of blob ${digest}`).raw;
      },
      async putBlob(repository, content) {
        if (!REPOSITORY.test(repository)) throw new Error(`not a repository name: ${repository}`);
        const digest = `sha256:${createHash("sha256").update(content).digest("hex")}`;
        const started = expectStatus(await request("POST", `/v2/${repository}/blobs/uploads/`, true), 202, "POST of a blob upload");
        const location = new URL(String(started.headers.location), `https://${server}`);
        location.searchParams.set("digest", digest);
        expectStatus(await request("PUT", `${location.pathname}${location.search}`, true, { type: "application/octet-stream", content }), 201, `PUT of blob ${digest}`);
        return digest;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

class RegistryExited extends Error {}

/** The uid and gid the image runs as (its `USER`), for the owner of its tmpfs storage. */
async function imageUser(image: string): Promise<{ uid: string; gid: string }> {
  const found = await docker(["image", "inspect", "--format", "{{.Config.User}}", image], { allowFailure: true });
  if (found.code !== 0) throw new Error(`image ${image} is missing. Build it with: bash scripts/build-registry-image.sh`);
  const [uid = "", gid = uid] = found.stdout.trim().split(":");
  if (!/^[1-9]\d*$/.test(uid) || !/^\d+$/.test(gid)) throw new Error(`image ${image} must run as a numeric non-root USER, not "${uid}:${gid}"`);
  return { uid, gid };
}

/**
 * One htpasswd line with a bcrypt hash, made inside the registry image (its Python 3.11 hashes
 * bcrypt through libxcrypt's crypt(3)) so that no host tool is needed. The password reaches the
 * container through the environment, never a command line. Cost 5, as `htpasswd -B` makes it:
 * the registry checks the hash on every request.
 */
async function bcryptHtpasswd(image: string, username: string, password: string): Promise<string> {
  const script = [
    "import crypt, os, sys",
    "salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32)",
    "print(sys.argv[1] + ':' + crypt.crypt(os.environ['REGISTRY_PASSWORD'], salt))",
  ].join("\n");
  const { stdout } = await docker(
    ["run", "--rm", "--name", uniqueName("registry-htpasswd"), "--network", "none", "--env", "REGISTRY_PASSWORD", image, "python3", "-W", "ignore::DeprecationWarning", "-c", script, username],
    { env: { REGISTRY_PASSWORD: password } },
  );
  const line = stdout.trim();
  if (!line.startsWith(`${username}:$2b$05$`)) throw new Error(`the registry image made no bcrypt htpasswd line: ${line.slice(0, 40)}`);
  return `${line}\n`;
}

function manifestPath(repository: string, reference: string): string {
  if (!REPOSITORY.test(repository)) throw new Error(`not a repository name: ${repository}`);
  if (!TAG.test(reference) && !DIGEST.test(reference)) throw new Error(`not a tag or sha256 digest: ${reference}`);
  return `/v2/${repository}/manifests/${reference}`;
}

interface RegistryAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  raw: Buffer;
}

/** One HTTPS request to the registry's API on a fresh connection, trusting only the throwaway CA. */
function registryRequest(
  server: string,
  ca: Buffer,
  method: string,
  path: string,
  credentials: { username: string; password: string } | undefined,
  body?: { type: string; content: Buffer },
): Promise<RegistryAnswer> {
  const headers: Record<string, string> = { accept: MANIFEST_MEDIA_TYPES.join(", "), connection: "close" };
  if (body !== undefined) Object.assign(headers, { "content-type": body.type, "content-length": String(body.content.length) });
  if (credentials !== undefined) {
    headers.authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64")}`;
  }
  return new Promise((resolve, reject) => {
    const request = https.request(
      `https://${server}${path}`,
      { method, headers, ca, agent: false, timeout: 10_000 },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", reject);
        response.on("end", () => {
          const raw = Buffer.concat(chunks);
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body: raw.toString("utf8"), raw });
        });
      },
    );
    request.on("timeout", () => request.destroy(new Error(`no answer from https://${server}${path} in time`)));
    request.on("error", reject);
    request.end(body?.content);
  });
}
