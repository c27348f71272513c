"""HTTP framing the standards refuse, against the real server over raw sockets (RFC 9110, RFC 9112).

The app never sees these requests as they were sent: uvicorn's parser turns them into an ASGI
scope first (two ``Host`` lines become a list, an absolute-form target loses its authority, a
``gzip, chunked`` body arrives still gzipped), so only the real server shows what a client gets.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.headers import assert_security_headers
from tests.support.raw_http import RawResponse, exchange
from tests.support.server import Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    db = tmp_path_factory.mktemp("framing") / "app.db"
    env = {"APP_ENV": "staging", "DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": TEST_SECRET_KEY}
    server = Server({**env, "ALLOWED_HOSTS": "localhost,127.0.0.1"})
    try:
        server.wait_healthy()
        yield server
    finally:
        out, err = server.terminate()
        assert "Traceback" not in out + err


def access_lines(server: Server) -> list[dict[str, object]]:
    time.sleep(0.2)  # access lines are written in batches, at most 50 ms apart
    out, _ = server.output()
    return [
        r
        for r in (json.loads(line) for line in out.splitlines() if line.startswith("{"))
        if r["logger"] == "app.access"
    ]


def item_count(server: Server) -> int:
    response = server.get("/api/v1/items")
    return int(json.loads(response.read())["total"])


def refused(response: RawResponse, status: int, detail: str) -> None:
    """The protocol's own answer: the status, the security headers, JSON, and the connection closed."""
    assert response.status == status, response
    assert response.responses == 1
    assert json.loads(response.body) == {"detail": detail}
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    assert_security_headers(response.headers, hsts=True)


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


@pytest.mark.parametrize(
    "hosts", [["localhost", "localhost"], ["localhost", "evil.example.net"], ["evil.example.net", "localhost"]]
)
def test_two_host_headers_get_400_before_the_app_runs(server: Server, hosts: list[str]) -> None:
    lines = "".join(f"Host: {host}\n" for host in hosts)
    response = exchange(server.port, request(f"GET /healthz HTTP/1.1\n{lines}X-Request-ID: two-hosts-{len(hosts)}\n"))
    refused(response, 400, "More than one Host header")
    assert response.headers["x-request-id"] == "two-hosts-2"


def test_an_http_1_1_request_without_host_gets_400_and_http_1_0_goes_to_the_allow_list(server: Server) -> None:
    refused(exchange(server.port, request("GET /healthz HTTP/1.1\n")), 400, "Missing Host header")
    # HTTP/1.0 has no Host requirement; the allow-list then refuses the missing name.
    response = exchange(server.port, request("GET /healthz HTTP/1.0\n"))
    assert (response.status, json.loads(response.body)) == (400, {"detail": "Invalid host header"})
    assert exchange(server.port, request("GET /healthz HTTP/1.0\nHost: localhost\n")).status == 200


@pytest.mark.parametrize(
    ("target", "host", "status"),
    [
        # The target's authority is the request's host (RFC 9112 section 3.2.2): the allow-list checks it.
        ("http://evil.example.net/healthz", "localhost", 400),
        ("http://evil.example.net:8000/healthz", "127.0.0.1", 400),
        ("HTTPS://LOCALHOST/healthz", "evil.example.net", 200),
        ("http://127.0.0.1:8000/healthz", "evil.example.net", 200),
    ],
)
def test_an_absolute_form_target_is_checked_against_the_allowed_hosts(
    server: Server, target: str, host: str, status: int
) -> None:
    response = exchange(server.port, request(f"GET {target} HTTP/1.1\nHost: {host}\nConnection: close\n"))
    assert response.status == status
    if status == 400:
        assert json.loads(response.body) == {"detail": "Invalid host header"}
    assert_security_headers(response.headers, hsts=True)


@pytest.mark.parametrize("target", ["http://user@localhost/healthz", "ftp://localhost/healthz"])
def test_an_absolute_form_target_with_user_info_or_another_scheme_gets_400(server: Server, target: str) -> None:
    response = exchange(server.port, request(f"GET {target} HTTP/1.1\nHost: localhost\n"))
    refused(response, 400, "Request target not understood")


@pytest.mark.parametrize(
    "codings",
    [["gzip, chunked"], ["gzip", "chunked"], ["deflate, chunked"], ["x-custom, chunked"], ["chunked", "chunked"]],
)
def test_a_transfer_coding_other_than_chunked_is_refused_and_its_body_never_parsed(
    server: Server, codings: list[str]
) -> None:
    before = item_count(server)
    lines = "".join(f"Transfer-Encoding: {coding}\n" for coding in codings)
    body = b'{"name": "never stored"}'
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    head = f"POST /api/v1/items HTTP/1.1\nHost: localhost\nContent-Type: application/json\n{lines}"
    response = exchange(server.port, request(head, chunked))
    if codings == ["chunked", "chunked"]:
        refused(response, 400, "Invalid HTTP request received.")  # the parser's own refusal
    else:
        refused(response, 501, "Transfer codings other than chunked are not implemented")
    assert item_count(server) == before
    # The one access line of that request is the refusal: the app never ran for it.
    assert not [r for r in access_lines(server) if r["method"] == "POST" and r["status"] not in (400, 501)]


def test_head_is_answered_for_every_get_route_without_a_body(server: Server) -> None:
    document = json.loads(server.get("/openapi.json").read())
    created = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    created.request("POST", "/api/v1/items", body=b'{"name": "head"}', headers={"content-type": "application/json"})
    item_id = json.loads(created.getresponse().read())["id"]
    created.close()
    paths = [path.replace("{item_id}", str(item_id)) for path, ops in document["paths"].items() if "get" in ops]
    assert len(paths) == 6  # /healthz, /readyz, /version, /hardening, the list and one item
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for path in [*paths, "/openapi.json"]:
        conn.request("GET", path)
        get = conn.getresponse()
        get_body = get.read()
        conn.request("HEAD", path)
        head = conn.getresponse()
        assert head.read() == b""
        assert (head.status, head.getheader("content-length")) == (get.status, str(len(get_body))), path
        assert head.getheader("content-type") == get.getheader("content-type")
    # Still on the same connection: no body was sent after any HEAD's head.
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    heads = [r for r in access_lines(server) if r["method"] == "HEAD"]
    assert {(r["path"], r["status"]) for r in heads} >= {("/healthz", 200), (f"/api/v1/items/{item_id}", 200)}


@pytest.mark.parametrize(
    "path", ["/api/v1/items/%201", "/api/v1/items/+1", "/api/v1/items/01", "/api/v1/items?limit=1.0"]
)
def test_a_number_in_the_url_in_any_other_spelling_than_plain_digits_is_422(server: Server, path: str) -> None:
    response = exchange(server.port, request(f"GET {path} HTTP/1.1\nHost: localhost\nConnection: close\n"))
    assert response.status == 422
    assert json.loads(response.body)["detail"][0]["type"] == "int_parsing"
