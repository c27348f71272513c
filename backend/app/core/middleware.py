"""Pure ASGI middleware: security headers, request context and access log, body size limit.

Pure ASGI (not ``BaseHTTPMiddleware``) keeps the per-request overhead to a few function calls and
does not buffer or re-wrap streaming responses.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("app.access")
error_log = logging.getLogger("app.error")

Header = tuple[bytes, bytes]

_BASE_CSP = b"default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc load their scripts and styles from jsDelivr; only those pages get this.
_DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    b"connect-src 'self'; worker-src blob:; frame-ancestors 'none'"
)
_PERMISSIONS_POLICY = (
    b"accelerometer=(), autoplay=(), camera=(), display-capture=(), fullscreen=(), geolocation=(), "
    b"gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), usb=()"
)
_HSTS = b"max-age=63072000; includeSubDomains"
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
    }
)


def security_headers(*, hsts: bool, csp: bytes = _BASE_CSP) -> list[Header]:
    headers: list[Header] = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"content-security-policy", csp),
        (b"referrer-policy", b"no-referrer"),
        (b"permissions-policy", _PERMISSIONS_POLICY),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]
    if hsts:
        headers.append((b"strict-transport-security", _HSTS))
    return headers


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response and removes any ``Server`` header."""

    def __init__(self, app: ASGIApp, *, hsts: bool, docs_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.headers = security_headers(hsts=hsts)
        self.docs_headers = security_headers(hsts=hsts, csp=_DOCS_CSP)
        self.docs_paths = docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.docs_headers if scope["path"] in self.docs_paths else self.headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [h for h in message.get("headers", ()) if h[0].lower() not in _MANAGED]
                message["headers"] = kept + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


_REQUEST_ID_RE = re.compile(rb"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _REQUEST_ID_RE.match(value):
                return str(value.decode("ascii"))
            break
    return uuid.uuid4().hex


def _json_response_start(status: int, body: bytes, extra: list[Header] | None = None) -> Message:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    return {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}


class RequestContextMiddleware:
    """Request id, one JSON access-log line per request, and a generic 500 for unhandled errors.

    The request id comes from a valid ``X-Request-ID`` header or is generated; it is stored in
    ``scope["state"]["request_id"]`` and echoed in the response. Only method, path (never the
    query string), status, duration and client address are logged: never headers, so neither
    ``Authorization`` nor cookies can reach the log.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode("ascii"))
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            error_log.exception(
                "unhandled error", extra={"request_id": request_id, "method": scope["method"], "path": scope["path"]}
            )
            if not started:
                body = json.dumps({"detail": "Internal Server Error", "requestId": request_id}).encode()
                await send(_json_response_start(500, body, [id_header]))
                await send({"type": "http.response.body", "body": body})
            status = 500
        finally:
            client = scope.get("client")
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                    "client": client[0] if client else None,
                },
            )


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"Request body too large (limit {limit} bytes)")


class BodySizeLimitMiddleware:
    """Rejects request bodies above ``max_bytes``: by Content-Length up front, and while streaming.

    A streamed (chunked) body that grows past the limit raises :class:`BodyTooLargeError` from
    ``receive``; FastAPI re-raises HTTP exceptions from body parsing, so the route answers 413.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _reject(self, send: Send) -> None:
        body = json.dumps({"detail": f"Request body too large (limit {self.max_bytes} bytes)"}).encode()
        await send(_json_response_start(413, body, [(b"connection", b"close")]))
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
                break

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLargeError:
            # Reached only when the body was read outside a FastAPI route (which answers itself).
            if started:
                raise
            await self._reject(send)
