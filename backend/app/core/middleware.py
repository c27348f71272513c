"""The security, request-logging and request-metrics middleware, as one pure ASGI layer.

One layer instead of a stack of small ones (request id, trusted host, body limit, headers, access
log, metrics, generic 500): every extra ASGI layer costs a closure and an await per message, and
this one runs on every request. Pure ASGI (not ``BaseHTTPMiddleware``) also leaves streaming
responses untouched.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import log_access

error_log = logging.getLogger("app.error")
_getrandbits = random.getrandbits

Header = tuple[bytes, bytes]

# The header values live in security_headers.json beside this module, which the front proxy reads
# too for the answers it writes itself: one list for every response, whoever writes it.
_SPEC = json.loads((Path(__file__).with_name("security_headers.json")).read_text(encoding="utf-8"))
_HEADERS: dict[str, str] = _SPEC["headers"]
BASE_CSP = _HEADERS["content-security-policy"].encode()
# Swagger UI and ReDoc load their scripts and styles from jsDelivr; only those pages get this.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Every feature the OWASP list names, all denied (OWASP allows sync-xhr for 'self'; an API needs none).
PERMISSIONS_POLICY_FEATURES: tuple[str, ...] = tuple(_SPEC["permissionsPolicyFeatures"])
PERMISSIONS_POLICY = ", ".join(f"{feature}=()" for feature in PERMISSIONS_POLICY_FEATURES).encode()
HSTS = str(_SPEC["hsts"]).encode()
# No API answer may be stored by a browser or a shared cache: answers can carry user data.
CACHE_CONTROL = _HEADERS["cache-control"].encode()
# Headers this layer owns: whatever the app set for them is replaced; Server is dropped.
_MANAGED = frozenset(
    {
        b"server",
        b"strict-transport-security",
        b"x-content-type-options",
        b"x-frame-options",
        b"content-security-policy",
        b"referrer-policy",
        b"permissions-policy",
        b"cross-origin-opener-policy",
        b"cross-origin-resource-policy",
        b"cross-origin-embedder-policy",
        b"x-permitted-cross-domain-policies",
        b"cache-control",
        b"x-request-id",
    }
)
INVALID_HOST_BODY = b'{"detail": "Invalid host header"}'
#: An ASGI extension of this app's own server (app/http_protocol.py): where a request's scope lists it, the
#: response start may carry the fixed security headers under this key as one encoded block, which
#: the server writes as is instead of checking each header again (about 1.5 µs per header a response).
HEADER_BLOCK = "app.header_block"
_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# RFC 9110 section 7.2: uri-host [ ":" port ], the host a name, an IPv4 address or an IP literal.
_HOST_VALUE_RE = re.compile(rb"^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?\Z")
# RFC 9110 field names (tokens) and field values: no control characters but tab.
_TOKEN_RE = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_VALUE_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def security_headers(*, hsts: bool, docs: bool = False) -> list[Header]:
    """The headers every response carries (``docs``: the Swagger UI and ReDoc pages)."""
    headers: list[Header] = [
        (name.encode(), DOCS_CSP if docs and name == "content-security-policy" else value.encode())
        for name, value in _HEADERS.items()
        # The docs pages embed jsDelivr's scripts, which COEP would block unless jsDelivr opted in.
        if not (docs and name == "cross-origin-embedder-policy")
    ]
    headers.append((b"permissions-policy", PERMISSIONS_POLICY))
    if hsts:
        headers.append((b"strict-transport-security", HSTS))
    return headers


def encode_block(headers: list[Header]) -> bytes:
    """``headers`` as they go on the wire, each line checked once, here: ``name: value\\r\\n``."""
    for name, value in headers:
        if not _TOKEN_RE.match(name) or _BAD_VALUE_RE.search(value):
            raise ValueError(f"not a valid header line: {name!r}")
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


def request_id_for(header: bytes | None) -> str:
    """The client's ``X-Request-ID`` when it is 1-128 safe characters, else a new id.

    A new id is 128 random bits as 32 hex digits. A request id correlates log lines and guards
    nothing: it needs uniqueness, not secrecy, so `random` (reseeded in every forked worker)
    serves, without the system call os.urandom makes.
    """
    if header is not None and _REQUEST_ID_RE.match(header):
        return header.decode("ascii")
    return _getrandbits(128).to_bytes(16, "big").hex()


class RequestMetrics(Protocol):
    """What the layer tells the metrics (app/core/metrics.py ``Metrics``) of each request."""

    def request_started(self) -> None:
        """A request has arrived."""

    def request_finished(self, scope: Scope, method: str, status: int, seconds: float) -> None:
        """The request was answered with ``status``; ``scope`` is the one the router saw."""

    def request_refused(self, method: str, status: int) -> None:
        """The HTTP protocol answered the request itself, before the app (app/http_protocol.py)."""


class _ProcessMetrics:
    """The request metrics of this process, for the answers the HTTP protocol gives without the app."""

    current: RequestMetrics | None = None


def use_request_metrics(metrics: RequestMetrics | None) -> None:
    """Count the HTTP protocol's own answers in ``metrics`` (the app factory calls it)."""
    _ProcessMetrics.current = metrics


def count_refusal(method: str, status: int) -> None:
    """Count one answer the HTTP protocol gave itself (a malformed or late request)."""
    metrics = _ProcessMetrics.current
    if metrics is not None:
        metrics.request_refused(method, status)


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"Request body too large (limit {limit} bytes)")


class HostMatcher:
    """Host-header check with the semantics of Starlette's TrustedHostMiddleware.

    A pattern is an exact host name, ``*.example.com`` (any subdomain) or ``*`` (anything).
    The port is ignored.
    """

    # Host values seen allowed are remembered (up to this many), so a request needs one set lookup.
    MAX_KNOWN = 256

    def __init__(self, patterns: Iterable[str]) -> None:
        patterns = [p.lower() for p in patterns]
        self.allow_any = "*" in patterns
        self.exact = frozenset(p.encode() for p in patterns if not p.startswith("*"))
        self.suffixes = tuple(p[1:].encode() for p in patterns if p.startswith("*."))
        #: Raw ``Host`` values already found allowed.
        self.known: set[bytes | None] = set()

    def __call__(self, host_header: bytes | None) -> bool:
        if host_header in self.known:
            return True
        # RFC 9112 section 3.2: a Host value that is not a host (and port) is refused even under '*'.
        allowed = (host_header is None or bool(_HOST_VALUE_RE.match(host_header))) and self._matches(host_header)
        if allowed and len(self.known) < self.MAX_KNOWN:
            self.known.add(host_header)
        return allowed

    def _matches(self, host_header: bytes | None) -> bool:
        if self.allow_any:
            return True
        if not host_header:
            return False
        host = host_header.lower()
        if not host.startswith(b"["):  # IPv6 literals keep their colons
            host = host.partition(b":")[0]
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))


class SecurityMiddleware:
    """Request id, trusted hosts, body size limit, security headers, access log and a generic 500.

    - ``X-Request-ID``: taken from the request when it is 1-128 safe characters, else generated;
      stored in ``scope["state"]["request_id"]`` and echoed on the response.
    - A ``Host`` outside the allowed patterns, not a host and port, or sent twice gets 400
      ``Invalid host header``.
    - A body over ``max_body_bytes`` gets 413: at once when Content-Length says so, or as soon as
      a streamed body grows past it (raised from ``receive``; FastAPI re-raises HTTP exceptions
      from body parsing, so the route answers 413 itself).
    - Every response, error or not, carries :func:`security_headers`; any ``Server`` header is
      removed.
    - ``HEAD`` reaches the app as ``GET``: every GET route answers it (the server sends no body).
    - An unhandled exception is logged with its traceback and answered with
      ``{"detail": "Internal Server Error", "requestId": ...}``, never the traceback.
    - One JSON access line per request: request id, method, path (never the query string),
      status, duration, client address. Headers are never logged, so neither ``Authorization``
      nor cookies can reach the log.
    - With ``metrics``: the request in flight while it runs, then counted and timed by the route
      the router matched (see app/core/metrics.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        max_body_bytes: int,
        hsts: bool,
        docs_paths: frozenset[str] = frozenset(),
        metrics: RequestMetrics | None = None,
    ) -> None:
        self.app = app
        # Bound methods kept, so that a request creates none.
        self.request_started = None if metrics is None else metrics.request_started
        self.request_finished = None if metrics is None else metrics.request_finished
        self.host_allowed = HostMatcher(allowed_hosts)
        self.max_body_bytes = max_body_bytes
        self.headers = security_headers(hsts=hsts)
        self.docs_headers = security_headers(hsts=hsts, docs=True)
        self.block = encode_block(self.headers)
        self.docs_block = encode_block(self.docs_headers)
        self.docs_paths = docs_paths
        self.too_large_body = json.dumps({"detail": f"Request body too large (limit {max_body_bytes} bytes)"}).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0912, PLR0915
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        if self.request_started is not None:
            self.request_started()
        host = request_id = content_length = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"host":
                # One Host only (RFC 9112 section 3.2; this app's own server refuses a second one
                # first): a second one leaves an empty value, which the allow-list refuses.
                host = value if host is None else b""
            elif name == b"x-request-id":
                request_id = value
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
        rid = request_id_for(request_id)
        scope.setdefault("state", {})["request_id"] = rid
        docs = scope["path"] in self.docs_paths
        block: bytes | None = None
        if HEADER_BLOCK in (scope.get("extensions") or ()):
            block = self.docs_block if docs else self.block
            extra = [(b"x-request-id", rid.encode())]
        else:
            extra = [*(self.docs_headers if docs else self.headers), (b"x-request-id", rid.encode())]
        status = 500
        started = False
        method = scope["method"]
        # HEAD is a GET without the body (RFC 9110 section 9.3.2), so every GET route answers it:
        # routed as a GET, while the server, which still sees HEAD, sends the head alone.
        app_scope = {**scope, "method": "GET"} if method == "HEAD" else scope

        async def send_secured(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [h for h in message.get("headers", ()) if h[0].lower() not in _MANAGED] + extra
                if block is not None:
                    message[HEADER_BLOCK] = block
            await send(message)

        try:
            if not self.host_allowed(host):
                await _respond(send_secured, 400, INVALID_HOST_BODY, b"application/json")
            elif content_length is not None and _declared_length(content_length) > self.max_body_bytes:
                await _respond(send_secured, 413, self.too_large_body, b"application/json", (b"connection", b"close"))
            elif content_length is None and not chunked:
                # No body can follow (RFC 9112 section 6.3): nothing to count, so no wrapper to pay for.
                await self.app(app_scope, receive, send_secured)
            else:
                await self.app(app_scope, _limited(receive, self.max_body_bytes), send_secured)
        except BodyTooLargeError:
            # Reached only when the body was read outside a FastAPI route (which answers itself).
            if not started:
                await _respond(send_secured, 413, self.too_large_body, b"application/json", (b"connection", b"close"))
        except Exception:
            context = {"request_id": rid, "method": method, "path": scope["path"]}
            if started:
                # The client already has its status line: the access line keeps the status it got.
                error_log.exception("error after the response started (status %d)", status, extra=context)
            else:
                error_log.exception("unhandled error", extra=context)
                body = json.dumps({"detail": "Internal Server Error", "requestId": rid}).encode()
                await _respond(send_secured, 500, body, b"application/json")
        finally:
            duration = time.perf_counter() - start
            client = scope.get("client")
            log_access(
                request_id=rid,
                method=method,
                path=scope["path"],
                status=status,
                duration=duration,
                client=client[0] if client else None,
            )
            if self.request_finished is not None:
                # app_scope: the router wrote the matched route into it.
                self.request_finished(app_scope, method, status, duration)


async def _respond(send: Send, code: int, body: bytes, content_type: bytes, *headers: Header) -> None:
    """A whole response from this layer itself (400, 413, 500)."""
    start_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": code, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises :class:`BodyTooLargeError` once the body grows past ``limit`` bytes."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLargeError(limit)
        return message

    return receive_limited


def _declared_length(value: bytes) -> int:
    try:
        return int(value)
    except ValueError:
        return -1
