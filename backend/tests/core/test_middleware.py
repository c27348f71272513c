"""Security headers on every response, request ids, trusted hosts, CORS, body limit, generic 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from app.core.middleware import HostMatcher, encode_block, security_headers
from app.main import create_app
from tests.conftest import FAST_BACKOFF, ClientFactory, SettingsFactory
from tests.support.headers import assert_security_headers


@pytest.fixture
def boom_client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    """The real app plus one failing route, added here so the shipped app has none."""
    app = create_app(make_settings(APP_ENV="staging"), backoff=FAST_BACKOFF)

    async def boom() -> None:
        raise RuntimeError("kaboom: internal detail that must not reach the client")

    app.add_api_route("/boom", boom)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


@pytest.mark.parametrize("env", ["staging", "production"])
def test_headers_on_200_with_hsts(make_client: ClientFactory, postgres_url: str, env: str) -> None:
    client = make_client(APP_ENV=env, DATABASE_URL=postgres_url)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert_security_headers(response.headers, hsts=True)


def test_headers_on_200_without_hsts_in_development(client: TestClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert_security_headers(response.headers, hsts=False)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("GET", "/api/v1/items/123456", 404),
        ("PUT", "/healthz", 405),
        ("GET", "/api/v1/items?limit=0", 422),
        ("POST", "/api/v1/items", 422),
    ],
)
def test_headers_on_errors(make_client: ClientFactory, method: str, path: str, status: int) -> None:
    client = make_client(APP_ENV="staging")
    response = client.request(method, path, json={"name": ""} if method == "POST" else None)
    assert response.status_code == status
    assert_security_headers(response.headers, hsts=True)
    assert response.headers["x-request-id"]


def test_unhandled_error_is_a_generic_500_with_headers(boom_client: TestClient) -> None:
    response = boom_client.get("/boom", headers={"X-Request-ID": "req-500-check"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal Server Error", "requestId": "req-500-check"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-500-check"
    assert "kaboom" not in response.text
    assert "Traceback" not in response.text
    assert_security_headers(response.headers, hsts=True)


def test_request_id_is_echoed_when_valid(client: TestClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.def:456_x"})
    assert response.headers["x-request-id"] == "abc-123.def:456_x"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "<script>", "-leading-dash"])
def test_invalid_request_id_is_replaced(client: TestClient, bad: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    generated = response.headers["x-request-id"]
    assert generated != bad
    assert len(generated) == 32
    assert all(c in "0123456789abcdef" for c in generated)


def test_generated_request_ids_differ(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert first != second


def test_untrusted_host_rejected_with_headers(make_client: ClientFactory) -> None:
    client = make_client(APP_ENV="staging", ALLOWED_HOSTS="api.example.com,*.example.org")
    rejected = client.get("/healthz", headers={"Host": "evil.example.net"})
    assert rejected.status_code == 400
    assert rejected.json() == {"detail": "Invalid host header"}
    assert rejected.headers["content-type"] == "application/json"
    assert_security_headers(rejected.headers, hsts=True)
    assert client.get("/healthz", headers={"Host": "api.example.com"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "x.example.org:8443"}).status_code == 200


def test_default_allowed_hosts_are_loopback_names(make_client: ClientFactory) -> None:
    client = make_client()
    assert client.get("/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "localhost"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "example.com"}).status_code == 400


def test_cors_allowed_origin(make_client: ClientFactory) -> None:
    client = make_client(CORS_ORIGINS="https://app.example.com")
    preflight = client.options(
        "/api/v1/items",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    simple = client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


def test_cors_denied_origin(make_client: ClientFactory) -> None:
    client = make_client(CORS_ORIGINS="https://app.example.com")
    preflight = client.options(
        "/api/v1/items",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers
    assert_security_headers(preflight.headers, hsts=False)
    simple = client.get("/healthz", headers={"Origin": "https://evil.example.net"})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


def test_no_cors_headers_when_no_origins_configured(client: TestClient) -> None:
    response = client.get("/healthz", headers={"Origin": "https://app.example.com"})
    assert "access-control-allow-origin" not in response.headers


def test_body_over_limit_by_content_length_is_413(make_client: ClientFactory) -> None:
    client = make_client(MAX_BODY_BYTES="100")
    response = client.post("/api/v1/items", content=b"x" * 101, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 100 bytes)"}
    assert_security_headers(response.headers, hsts=False)


def test_streamed_body_over_limit_is_413(make_client: ClientFactory) -> None:
    client = make_client(MAX_BODY_BYTES="100")

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(10):
            yield b"y" * 20
        yield b'"}'

    # A generator body is sent chunked, without Content-Length: only the streaming check sees it.
    response = client.post("/api/v1/items", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 100 bytes)"}
    assert_security_headers(response.headers, hsts=False)


def test_body_at_limit_is_accepted(make_client: ClientFactory) -> None:
    body = json.dumps({"name": "n" * 50}).encode()
    client = make_client(MAX_BODY_BYTES=str(len(body)))
    response = client.post("/api/v1/items", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 201


def test_docs_off_in_production(make_client: ClientFactory, postgres_url: str) -> None:
    client = make_client(APP_ENV="production", DATABASE_URL=postgres_url)
    for path in ("/docs", "/redoc", "/openapi.json"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert_security_headers(response.headers, hsts=True)


def test_docs_in_development_get_a_relaxed_csp_on_docs_paths_only(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    csp = docs.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'none'" in csp
    # jsDelivr's scripts would need to opt in to cross-origin embedding; the docs page does not demand it.
    assert "cross-origin-embedder-policy" not in docs.headers
    assert docs.headers["cache-control"] == "no-store, max-age=0"
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    assert_security_headers(spec.headers, hsts=False)
    assert set(spec.json()["paths"]) == {
        "/healthz",
        "/readyz",
        "/version",
        "/hardening",
        "/api/v1/items",
        "/api/v1/items/{item_id}",
    }


def test_bare_app_has_no_middleware(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(), middleware=False)
    with TestClient(app, base_url="http://example.com") as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert "x-request-id" not in response.headers
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (b"api.example.com", True),
        (b"API.Example.COM:443", True),
        (b"a.b.example.org", True),
        (b"example.org", False),
        (b"evilexample.org", False),
        (b"api.example.com.evil.net", False),
        (b"", False),
        (None, False),
    ],
)
def test_host_matcher(host: bytes | None, allowed: bool) -> None:
    assert HostMatcher(["api.example.com", "*.example.org"])(host) is allowed


def test_host_matcher_wildcard_accepts_anything() -> None:
    assert HostMatcher(["*"])(None) is True


def test_host_matcher_remembers_allowed_values_only_and_boundedly() -> None:
    matcher = HostMatcher(["*.example.org"])
    assert matcher(b"evil.example.net") is False
    assert matcher(b"evil.example.net") is False
    assert matcher.known == set()
    for n in range(HostMatcher.MAX_KNOWN + 10):
        assert matcher(f"h{n}.example.org".encode()) is True
    assert len(matcher.known) == HostMatcher.MAX_KNOWN
    # Past the bound, allowed values are still answered, just not remembered.
    assert matcher(f"h{HostMatcher.MAX_KNOWN + 5}.example.org".encode()) is True
    assert matcher(b"evil.example.net") is False


@pytest.mark.parametrize("allowed", ["api.example.com", "*"])
@pytest.mark.parametrize(
    "hosts", [["evil.example.net", "api.example.com"], ["api.example.com", "evil.example.net"], ["api.example.com"] * 2]
)
def test_a_second_host_header_is_refused_under_any_server(
    make_client: ClientFactory, allowed: str, hosts: list[str]
) -> None:
    # RFC 9112 section 3.2; this app's own server refuses it before the app runs (tests/test_framing.py).
    client = make_client(APP_ENV="staging", ALLOWED_HOSTS=allowed)
    response = client.get("/healthz", headers=[("Host", host) for host in hosts])
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid host header"}


@pytest.mark.parametrize("value", ["a b", "api.example.com/x", "api.example.com:80x", "[::1", "api@example.com"])
def test_a_host_value_that_is_not_a_host_is_refused_even_under_a_wildcard(
    make_client: ClientFactory, value: str
) -> None:
    client = make_client(ALLOWED_HOSTS="*")
    assert client.get("/healthz", headers={"Host": value}).status_code == 400
    assert client.get("/healthz", headers={"Host": "api.example.com:8443"}).status_code == 200


def test_the_header_block_is_checked_once_as_uvicorn_would_check_each_header() -> None:
    """The fixed headers skip uvicorn's per-response check (app.http_protocol.SecureCycle): each
    passes that check here, and a line that would fail it is refused when the block is made."""
    for hsts in (False, True):
        for docs in (False, True):
            headers = security_headers(hsts=hsts, docs=docs)
            for name, value in headers:
                assert not HEADER_RE.search(name), name
                assert not HEADER_VALUE_RE.search(value), name
            assert encode_block(headers) == b"".join(n + b": " + v + b"\r\n" for n, v in headers)
    for bad in [(b"x a", b"1"), (b"x-a", b"1\r\nx-injected: 1"), (b"", b"1"), (b"x-a", b"\x00")]:
        with pytest.raises(ValueError, match="not a valid header line"):
            encode_block([bad])
