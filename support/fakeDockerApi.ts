/**
 * A stand-in for the few Docker Engine API calls that image retention makes, on a unix socket of its
 * own: images (tags, digests, labels, build time), containers (their image, state, labels) and the
 * node id `/info` reports. It answers as the engine does where retention depends on it: removing a
 * tag that is an image's last reference deletes the image, unless a container uses it (409); removing
 * an image by id that a container uses or a tag still names is refused (409); a running container is
 * not removed (409). For tests of components/swarm/node_images.py; the real engine is the end-to-end suite's.
 */
import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";

/** An image as the stand-in holds it. */
export interface FakeImage {
  id: string;
  /** Seconds since the epoch. */
  created: number;
  labels: Record<string, string>;
  tags: string[];
  digests: string[];
}

/** A container as the stand-in holds it. */
export interface FakeContainer {
  id: string;
  imageId: string;
  state: "running" | "exited" | "created" | "dead";
  labels: Record<string, string>;
}

/** A running stand-in: its socket, its state (tests change and read it) and every call it answered. */
export interface FakeDockerApi {
  socket: string;
  nodeId: string;
  images: FakeImage[];
  containers: FakeContainer[];
  calls: string[];
  /** A call (`GET /images/json`) that answers HTTP 500, as an engine in trouble does. */
  fail?: string;
  close(): Promise<void>;
}

/** Starts a stand-in answering for node `nodeId`. */
export async function startFakeDockerApi(nodeId: string, images: FakeImage[], containers: FakeContainer[]): Promise<FakeDockerApi> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "fake-docker-"));
  const api: FakeDockerApi = { socket: path.join(dir, "docker.sock"), nodeId, images, containers, calls: [], close: async () => undefined };
  const find = (ref: string) => api.images.find((i) => i.id === ref || i.tags.includes(ref) || i.digests.includes(ref));
  const used = (image: FakeImage) => api.containers.some((c) => c.imageId === image.id);
  const drop = (image: FakeImage) => api.images.splice(api.images.indexOf(image), 1);

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://docker");
    const route = decodeURIComponent(url.pathname.replace(/^\/v1\.41/, ""));
    api.calls.push(`${req.method} ${route}${url.search}`);
    const answer = (status: number, body?: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(body === undefined ? "" : JSON.stringify(body));
    };
    const conflict = (message: string) => answer(409, { message });
    if (api.fail === `${req.method} ${route}`) return answer(500, { message: "engine failure" });
    let match: RegExpExecArray | null;
    if (req.method === "GET" && route === "/info") return answer(200, { Swarm: { NodeID: api.nodeId } });
    if (req.method === "GET" && route === "/images/json") {
      const [wanted = ""] = (JSON.parse(url.searchParams.get("filters") ?? "{}") as { reference?: string[] }).reference ?? [];
      const repository = wanted.replace(/:\*$/, "");
      const listed = api.images.filter((i) => i.tags.some((t) => t.startsWith(`${repository}:`)));
      return answer(200, listed.map((i) => ({ Id: i.id, Created: i.created, Labels: i.labels, RepoTags: i.tags, RepoDigests: i.digests })));
    }
    if ((match = /^\/images\/(.+)\/json$/.exec(route)) !== null && req.method === "GET") {
      const image = find(match[1]!);
      return image === undefined ? answer(404, { message: "No such image" }) : answer(200, { Id: image.id, Config: { Labels: image.labels }, RepoTags: image.tags, RepoDigests: image.digests });
    }
    if ((match = /^\/images\/(.+)\/tag$/.exec(route)) !== null && req.method === "POST") {
      const image = find(match[1]!);
      if (image === undefined) return answer(404, { message: "No such image" });
      const tag = `${url.searchParams.get("repo")}:${url.searchParams.get("tag")}`;
      for (const other of api.images) other.tags = other.tags.filter((t) => t !== tag);
      image.tags.push(tag);
      return answer(201);
    }
    if ((match = /^\/images\/(.+)$/.exec(route)) !== null && req.method === "DELETE") {
      const ref = match[1]!;
      const image = find(ref);
      if (image === undefined) return answer(404, { message: "No such image" });
      if (ref === image.id) {
        if (used(image)) return conflict("image is being used by a container");
        if (image.tags.length > 0) return conflict("image is referenced by a tag (must be forced)");
        drop(image);
        return answer(200, [{ Deleted: image.id }]);
      }
      if (image.tags.length + image.digests.length > 1) {
        image.tags = image.tags.filter((t) => t !== ref);
        return answer(200, [{ Untagged: ref }]);
      }
      if (used(image)) return conflict("unable to remove repository reference (must force): a container is using its referenced image");
      drop(image);
      return answer(200, [{ Untagged: ref }, { Deleted: image.id }]);
    }
    if (req.method === "GET" && route === "/containers/json") {
      const labels = (JSON.parse(url.searchParams.get("filters") ?? "{}") as { label?: string[] }).label ?? [];
      const listed = api.containers.filter((c) => labels.every((l) => { const [k = "", v] = l.split("="); return c.labels[k] === v; }));
      return answer(200, listed.map((c) => ({ Id: c.id, ImageID: c.imageId, State: c.state, Labels: c.labels })));
    }
    if ((match = /^\/containers\/(.+)$/.exec(route)) !== null && req.method === "DELETE") {
      const container = api.containers.find((c) => c.id === match![1]);
      if (container === undefined) return answer(404, { message: "No such container" });
      if (container.state === "running") return conflict("cannot remove a running container");
      api.containers.splice(api.containers.indexOf(container), 1);
      return answer(204);
    }
    return answer(500, { message: `the stand-in does not answer ${req.method} ${route}` });
  });
  await new Promise<void>((resolve) => server.listen(api.socket, resolve));
  api.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      fs.rmSync(dir, { recursive: true, force: true });
    });
  return api;
}
