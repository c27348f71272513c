"""What uvicorn answers itself, over raw sockets against the real server process.

A request uvicorn cannot parse never reaches the app or its middleware; these answers must still
carry the security headers, a request id and ``Cache-Control: no-store``, and leave an access line.
"""

from __future__ import annotations

import http.client
import json
import re
import socket

import httpx2 as httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.headers import assert_security_headers
from tests.support.raw_http import RawResponse, exchange
from tests.support.server import Server

HOST_LINE = b"Host: localhost\r\n"
# Requests a proxy would never forward, as raw bytes: each must get uvicorn's 400.
MALFORMED: dict[str, bytes] = {
    "request-line-garbage": b"GARBAGE\r\n\r\n",
    "method-with-bad-character": b"G(T /healthz HTTP/1.1\r\n" + HOST_LINE + b"\r\n",
    "unknown-http-version": b"GET /healthz HTTP/9.9\r\n" + HOST_LINE + b"\r\n",
    "http2-preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "nul-in-path": b"GET /heal\x00thz HTTP/1.1\r\n" + HOST_LINE + b"\r\n",
    "non-ascii-target": "GET /\u00e9 HTTP/1.1\r\n".encode() + HOST_LINE + b"\r\n",
    "over-long-query": b"GET /healthz?" + b"q" * 70_000 + b" HTTP/1.1\r\n" + HOST_LINE + b"\r\n",
    "bare-lf-line-ends": b"GET /healthz HTTP/1.1\nHost: localhost\n\n",
    "space-in-header-name": b"GET /healthz HTTP/1.1\r\n" + HOST_LINE + b"Bad Header: x\r\n\r\n",
    "control-character-in-header": b"GET /healthz HTTP/1.1\r\n" + HOST_LINE + b"X-A: a\x01b\r\n\r\n",
    "obsolete-line-folding": b"GET /healthz HTTP/1.1\r\n" + HOST_LINE + b"X-A: a\r\n b\r\n\r\n",
    "content-length-not-a-number": b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Content-Length: abc\r\n\r\n",
    "content-length-negative": b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Content-Length: -1\r\n\r\n",
    "content-length-twice": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    ),
    "content-length-and-transfer-encoding": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "transfer-encoding-not-ending-in-chunked": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Transfer-Encoding: chunked, identity\r\n\r\n"
    ),
    # The headers parse, so uvicorn has the request id; the bad chunk size comes after.
    "bad-chunk-size": (
        b"POST /api/v1/items HTTP/1.1\r\n" + HOST_LINE + b"Transfer-Encoding: chunked\r\n"
        b"X-Request-ID: raw-chunk-1\r\n\r\nzz\r\n"
    ),
}


@pytest.fixture(scope="module")
def exchanges(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[dict[str, RawResponse], list[dict[str, object]]]:
    """Every malformed request against one staging server, then the server's log after SIGTERM."""
    db = tmp_path_factory.mktemp("server") / "app.db"
    server = Server({"APP_ENV": "staging", "DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": TEST_SECRET_KEY})
    try:
        server.wait_healthy()
        responses = {name: exchange(server.port, request) for name, request in MALFORMED.items()}
        assert server.get("/healthz").status == 200, "the server serves on after every malformed request"
        out, err = server.terminate()
    finally:
        server.stop()
    assert "Traceback" not in out + err
    return responses, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_a_secured_400(
    name: str, exchanges: tuple[dict[str, RawResponse], list[dict[str, object]]]
) -> None:
    responses, log = exchanges
    response = responses[name]
    assert response.status_line == b"HTTP/1.1 400 Bad Request"
    assert response.responses == 1
    assert_security_headers(response.headers, hsts=True)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["connection"] == "close"
    assert "date" in response.headers
    assert json.loads(response.body) == {"detail": "Invalid HTTP request received."}
    assert int(response.headers["content-length"]) == len(response.body)
    request_id = response.headers["x-request-id"]
    if name == "bad-chunk-size":
        assert request_id == "raw-chunk-1"
    else:
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    access = [r for r in log if r["logger"] == "app.access" and r["request_id"] == request_id]
    assert {r["status"] for r in access} == {400}
    if name == "bad-chunk-size":
        # The app had the request too (its headers were fine) and saw the connection close.
        assert {(r["method"], r["path"]) for r in access} == {("POST", "/api/v1/items")}
    else:
        assert len(access) == 1


def test_request_ids_of_malformed_requests_differ(
    exchanges: tuple[dict[str, RawResponse], list[dict[str, object]]],
) -> None:
    responses, _ = exchanges
    generated = [r.headers["x-request-id"] for name, r in responses.items() if name != "bad-chunk-size"]
    assert len(set(generated)) == len(generated)


@pytest.mark.parametrize(("app_env", "workers"), [("development", "1"), ("staging", "2")])
def test_uvicorns_400_follows_the_environment_in_every_worker(
    make_server: type[Server], server_env: dict[str, str], app_env: str, workers: str
) -> None:
    server = make_server({**server_env, "APP_ENV": app_env, "WEB_CONCURRENCY": workers})
    server.wait_healthy()
    for _ in range(4):  # with two workers, the kernel hands connections to either
        response = exchange(server.port, MALFORMED["request-line-garbage"])
        assert response.status_line == b"HTTP/1.1 400 Bad Request"
        assert_security_headers(response.headers, hsts=app_env == "staging")


def test_version_on_the_real_server_names_this_host(make_server: type[Server], server_env: dict[str, str]) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    response = server.get("/version")
    assert response.status == 200
    assert json.loads(response.read())["release"] == socket.gethostname()


def test_every_answer_of_the_real_server_carries_each_security_header_once(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    """Through uvicorn itself, where the fixed headers go out as one block (app.http_protocol.SecureCycle).

    Several answers on one kept-alive connection, so that every request's response cycle is covered,
    not just the first: 200s, a HEAD (no body follows its head), a 201, a 404, a 422, a 405, and the docs page.
    """
    server = make_server({**server_env, "APP_ENV": "staging"})
    server.wait_healthy()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    json_body = {"content-type": "application/json"}
    cases: list[tuple[str, str, bytes | None, dict[str, str], int]] = [
        ("GET", "/healthz", None, {}, 200),
        ("HEAD", "/healthz", None, {}, 200),
        ("POST", "/api/v1/items", b'{"name": "block"}', json_body, 201),
        ("GET", "/api/v1/items/999999", None, {}, 404),
        ("POST", "/api/v1/items", b'{"name": ""}', json_body, 422),
        ("PUT", "/api/v1/items", b"{}", json_body, 405),
        ("GET", "/healthz", None, {"x-request-id": "block-test-1"}, 200),
    ]
    for method, path, body, headers, status in cases:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        assert response.status == status, (method, path, payload)
        received = httpx.Headers(response.getheaders())
        assert_security_headers(received, hsts=True)
        # The connection stays open for the next answer, which a broken head would not allow.
        assert response.getheader("connection") != "close"
        if method == "HEAD":
            assert payload == b""
        if "x-request-id" in headers:
            assert received["x-request-id"] == headers["x-request-id"]
    conn.close()

    server_dev = make_server(server_env)
    server_dev.wait_healthy()
    docs = server_dev.get("/docs")
    assert docs.status == 200
    received = httpx.Headers(docs.getheaders())
    assert len(received.get_list("content-security-policy")) == 1
    assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in received["content-security-policy"]
    assert "cross-origin-embedder-policy" not in received
    assert received.get_list("cache-control") == ["no-store, max-age=0"]
    assert len(received.get_list("x-request-id")) == 1
