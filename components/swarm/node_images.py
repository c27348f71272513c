"""Image retention on one Swarm node: the node side of components/swarm/nodeImages.ts.

A short-lived global job runs this once on every node that ran tasks of the stack's service, in the
backend image itself (the one image every such node holds: no pull from anywhere new), with that
node's Docker socket mounted. The backend image has Python and no Docker CLI, so this speaks the
Engine API over the unix socket with the standard library alone.

It does on the node what the single host's ReleaseImages provider does (components/release/
imagesProvider.ts), by the same plan: ``prune_plan`` is ``prunePlan`` of components/release/images.ts,
and test/swarmImages.test.ts holds the two equal on the same inputs (a test fails when they drift).
The stack's images are the ones carrying its own tag and the project's build label; the serving image
and the rollback target are kept, with the ``keepImages`` newest; of the others the stack's tag goes,
and the image with it when no other tag holds it and no container uses it. Never forced. The one
addition Swarm needs: the stopped containers that Swarm keeps of this service's finished tasks (its
task history) would hold every old image forever, so those of an image that goes are removed first.

Input: one JSON argument (see ``main``); the environment's ``NODE_ID`` is the node Swarm ran the task
on. Output: one JSON line, what the node kept and removed, or the error; exit status 1 on an error.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import socket
import sys
from typing import Any
from urllib.parse import quote, urlencode

#: The label every image the program builds carries (components/release/images.ts PROJECT_LABEL).
PROJECT_LABEL = "backend-delivery.project"
#: The label Swarm puts on the containers of a service's tasks.
SERVICE_LABEL = "com.docker.swarm.service.name"
#: Container states of a task that Swarm has finished with (a task's container never starts again).
FINISHED = ("exited", "dead", "created")
API = "/v1.41"
#: ``PR_SET_NO_NEW_PRIVS`` from <linux/prctl.h>.
PR_SET_NO_NEW_PRIVS = 38


def prune_plan(images: list[dict[str, Any]], pinned: list[str], keep_images: object) -> dict[str, list[str]]:
    """``prunePlan`` of components/release/images.ts: keep ``pinned`` and the ``keep_images`` newest.

    ``images`` are ``{"id", "created"}`` with ``created`` in seconds since the epoch; the newest by
    build time, then by id, both descending, as the TypeScript sorts them.
    """
    if isinstance(keep_images, bool) or not isinstance(keep_images, int) or keep_images < 1:
        raise ValueError(f"keepImages must be an integer of at least 1, got {keep_images}")
    newest = sorted(images, key=lambda i: (float(i["created"]), str(i["id"])), reverse=True)[:keep_images]
    keep = set(pinned) | {str(i["id"]) for i in newest}
    return {"keep": sorted(keep), "remove": sorted(str(i["id"]) for i in images if i["id"] not in keep)}


def stack_tag(repository: str, image_id: str) -> tuple[str, str]:
    """``stackImageTag`` of components/release/images.ts, as the tag API takes it: repository and tag."""
    return repository, image_id.removeprefix("sha256:")[:12]


class UnixConnection(http.client.HTTPConnection):
    """HTTP to the Docker engine over its unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=60)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(60)
        sock.connect(self.socket_path)
        self.sock = sock


class Engine:
    """The few Engine API calls retention needs."""

    def __init__(self, path: str) -> None:
        self.path = path

    def call(self, method: str, path: str, query: dict[str, str] | None = None) -> tuple[int, Any]:
        connection = UnixConnection(self.path)
        try:
            url = API + path + ("?" + urlencode(query) if query else "")
            connection.request(method, url, headers={"Content-Length": "0"} if method == "POST" else {})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        text = body.decode("utf-8", "replace")
        try:
            return response.status, json.loads(text) if text.strip() else None
        except json.JSONDecodeError:
            return response.status, text

    def expect(
        self, method: str, path: str, query: dict[str, str] | None = None, allowed: tuple[int, ...] = ()
    ) -> tuple[int, Any]:
        status, body = self.call(method, path, query)
        if status >= 300 and status not in allowed:
            message = body.get("message") if isinstance(body, dict) else body
            raise RuntimeError(f"{method} {path}: HTTP {status}: {message}")
        return status, body

    def image(self, ref: str) -> dict[str, Any] | None:
        status, body = self.expect("GET", f"/images/{quote(ref, safe='/:@')}/json", allowed=(404,))
        return None if status == 404 else body

    def remove_image(self, ref: str) -> bool:
        """Removes a reference (a tag, or an image id), never forced: False when the engine keeps it (409)."""
        status, _ = self.expect("DELETE", f"/images/{quote(ref, safe='/:@')}", allowed=(404, 409))
        return status != 409


def forbid_new_privileges() -> None:
    """No ``execve`` can raise this process's privileges (Docker 20.10 has no such field for a service)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if int(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) != 0:
        raise RuntimeError("cannot set no-new-privileges")


def prune(engine: Engine, spec: dict[str, Any], node: str) -> dict[str, Any]:
    """Tags what the stack keeps, removes what the plan says; returns what was kept and removed."""
    info = engine.expect("GET", "/info")[1]
    own = ((info or {}).get("Swarm") or {}).get("NodeID", "")
    # A socket path that names another engine than this node's (a second engine on one machine).
    if own != node:
        raise RuntimeError(f"the Docker socket {engine.path} belongs to node {own or '(none)'}, not to node {node}")
    project, repository = str(spec["project"]), str(spec["repository"])
    pinned: list[str] = []
    for ref in (spec["serving"], spec.get("previous")):
        image = None if ref is None else engine.image(str(ref))
        if image is None:
            continue
        pinned.append(image["Id"])
        # The rollback target too: a node that ran it only after a task moved there got no tag for it.
        if ((image.get("Config") or {}).get("Labels") or {}).get(PROJECT_LABEL) == project:
            repo, tag = stack_tag(repository, image["Id"])
            engine.expect("POST", f"/images/{image['Id']}/tag", {"repo": repo, "tag": tag})
    listed = engine.expect("GET", "/images/json", {"filters": json.dumps({"reference": [f"{repository}:*"]})})[1]
    images = [
        {
            "id": i["Id"],
            "created": i["Created"],
            "tags": [t for t in i.get("RepoTags") or [] if t.startswith(f"{repository}:")],
        }
        for i in listed or []
        if (i.get("Labels") or {}).get(PROJECT_LABEL) == project
    ]
    plan = prune_plan(images, pinned, spec["keepImages"])
    removed: list[str] = []
    held: list[str] = []
    for image_id in plan["remove"]:
        ours = next(i["tags"] for i in images if i["id"] == image_id)
        image = engine.image(image_id)
        if image is not None and set(image.get("RepoTags") or []) <= set(ours):
            # Nothing but the stack's tag and the digests of the pull that brought it (this node's copy)
            # claims it: the containers Swarm keeps of the service's finished tasks go first.
            finished_tasks(engine, str(spec["service"]), image_id)
        for tag in ours:
            engine.remove_image(tag)
        left = engine.image(image_id)
        if left is None or (not left.get("RepoTags") and engine.remove_image(image_id)):
            removed.append(image_id)
        else:
            held.append(image_id)
    return {"node": node, "kept": plan["keep"], "removed": removed, "held": held}


def finished_tasks(engine: Engine, service: str, image_id: str) -> None:
    """Removes the containers Swarm keeps of the service's finished tasks that ran ``image_id``."""
    filters = json.dumps({"label": [f"{SERVICE_LABEL}={service}"]})
    for container in engine.expect("GET", "/containers/json", {"all": "1", "filters": filters})[1] or []:
        if container.get("ImageID") == image_id and container.get("State") in FINISHED:
            engine.expect("DELETE", f"/containers/{container['Id']}", allowed=(404, 409))


def main() -> int:
    """Reads ``{project, repository, keepImages, serving, previous?, service, socket?}`` from argv[1]."""
    node = os.environ.get("NODE_ID", "")
    try:
        forbid_new_privileges()
        spec = json.loads(sys.argv[1])
        result = prune(Engine(str(spec.get("socket", "/var/run/docker.sock"))), spec, node)
    except Exception as error:  # every failure is the node's answer, not a traceback
        print(json.dumps({"node": node, "error": f"{type(error).__name__}: {error}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
