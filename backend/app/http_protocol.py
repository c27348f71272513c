"""The backend's HTTP/1.1 protocol: uvicorn's (httptools), with the framing rules and deadlines it lacks.

uvicorn answers a request it cannot parse itself, before any ASGI app runs, and it has no bound on
how long a client may take to send a request: it arms its keep-alive timeout only after a response,
and any byte received cancels it, so a client that sends its head or body a byte at a time holds
the connection forever. The subclasses here keep everything else of uvicorn's and add:

- **framing** (RFC 9112): an HTTP/1.1 request needs exactly one ``Host`` (section 3.2; HTTP/1.0 at
  most one), else 400; an absolute-form target (``GET http://host/path``) names the host itself,
  which then replaces ``Host`` (section 3.2.2) so the security layer's allow-list checks it, and a
  target with user info or another scheme gets 400; a transfer coding other than ``chunked``
  (``Transfer-Encoding: gzip, chunked``) gets 501 (section 6.1) instead of a body parsed as if it
  had none;
- **deadlines**: a connection that sends nothing is closed after the keep-alive timeout, as an
  idle kept-alive one is; a request head must arrive within :data:`HEAD_TIMEOUT_SECONDS` of its
  first byte (else 408 and the connection is closed); a body within :data:`BODY_TIMEOUT_SECONDS`
  of the head's end (else the app's read of it fails with 408, answered through the app as any
  error is, and the connection is closed);
- its own answers (400, 408, 501) carry the security headers, an X-Request-ID, ``Cache-Control:
  no-store`` and a JSON body, and leave one access line and count in the request metrics, like
  every answer of the app;
- the security layer's fixed headers are written as one block (:class:`SecureCycle`).
"""

from __future__ import annotations

import asyncio
import json
from functools import cache
from pathlib import Path
from typing import NoReturn, cast

import httptools
from starlette.exceptions import HTTPException
from uvicorn._types import ASGI3Application, ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol, RequestResponseCycle

from app.core.config import get_settings
from app.core.logging import log_access
from app.core.middleware import HEADER_BLOCK, Header, count_refusal, request_id_for, security_headers

# The values live in http_deadlines.json beside this module, which the front proxy reads too: its
# own timeouts are set around them (components/proxy/caddyConfig.ts).
_DEADLINES = json.loads(Path(__file__).with_name("http_deadlines.json").read_text(encoding="utf-8"))
#: How long a connection may stay open without a request under way (uvicorn's ``timeout_keep_alive``).
KEEP_ALIVE_SECONDS: int = _DEADLINES["keepAliveSeconds"]
#: How long a request's head (request line and headers) may take from its first byte.
HEAD_TIMEOUT_SECONDS: float = _DEADLINES["headSeconds"]
#: How long a request's body may take from the end of its head.
BODY_TIMEOUT_SECONDS: float = _DEADLINES["bodySeconds"]


@cache
def _protocol_headers() -> bytes:
    # Read once per process: a worker process builds its settings from the same environment.
    headers: list[Header] = security_headers(hsts=get_settings().hsts)
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


class RequestTimeoutError(HTTPException):
    """Raised from ``receive`` once the body is late; FastAPI answers it like any HTTP error."""

    def __init__(self) -> None:
        super().__init__(status_code=408, detail=f"Request body not received within {BODY_TIMEOUT_SECONDS:g} s")


class _Refused(Exception):  # noqa: N818  # not an error of ours: a request the protocol turns down
    """Raised from a parser callback; uvicorn's parser-error path then calls ``send_400_response``."""


class _HeadWithBlock:
    """A transport whose next write, the response head, gets ``block`` before the head's end."""

    def __init__(self, transport: asyncio.Transport, block: bytes) -> None:
        self._transport = transport
        self._block = block

    def write(self, data: bytes) -> None:
        # uvicorn writes the status line and every header in one piece that ends with the empty line.
        if not data.endswith(b"\r\n\r\n"):
            msg = "the response head does not end with its empty line: uvicorn's response cycle changed"
            raise RuntimeError(msg)
        self._transport.write(data[:-2] + self._block + b"\r\n")

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class SecureCycle(RequestResponseCycle):
    """uvicorn's response cycle, which writes the security layer's fixed headers as one block, and
    whose ``receive`` fails with 408 once the protocol found the body late.

    uvicorn checks every header of every response against two regular expressions; for the fixed
    security headers that is most of what they cost (about 1.5 µs each, 4.5 µs for
    Permissions-Policy). The layer checked them once, at start (``encode_block``), and hands them
    over under :data:`HEADER_BLOCK`; everything else about the response is uvicorn's own.
    """

    body_late = False

    async def send(self, message: ASGISendEvent) -> None:
        # The key is this app's, not ASGI's: the message's type does not list it.
        raw = cast("dict[str, object]", message)
        block = raw.pop(HEADER_BLOCK, None) if message["type"] == "http.response.start" else None
        if not isinstance(block, bytes) or self.response_started:
            await super().send(message)
            return
        transport = self.transport
        self.transport = _HeadWithBlock(transport, block)  # type: ignore[assignment]
        try:
            await super().send(message)
        finally:
            self.transport = transport

    async def receive(self) -> ASGIReceiveEvent:
        message = await super().receive()
        if self.body_late and message["type"] == "http.request":
            raise RequestTimeoutError
        return message


class SecureHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with the framing checks and deadlines above.

    A front proxy cannot be relied on for any of it: the backend is also reached directly (the
    readiness probe), and a proxy answers malformed requests itself.
    """

    # Per request: when its head began and when its body began (None: not reading that part), the
    # reason it is refused, and the timers, armed only when a piece of data leaves a part unfinished.
    _head_began: float | None = None
    _body_began: float | None = None
    _body_pending = False
    _refusal: tuple[int, str] | None = None
    _head_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    # Set by shutdown(): every answer from now on closes its connection.
    _draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms this only after a response: a connection that never sends a byte would stay.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_began = self._body_began = None
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Most requests arrive whole in one piece: a timer only for one that is left unfinished.
        if self.transport.is_closing():
            return
        if self._head_began is not None and self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_began + HEAD_TIMEOUT_SECONDS, self._head_late)
        if self._body_began is not None and self._body_timer is None:
            self._body_timer = self.loop.call_at(self._body_began + BODY_TIMEOUT_SECONDS, self._body_late)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # Tells the security layer that this server takes its headers as one block (SecureCycle).
        self.scope["extensions"] = {HEADER_BLOCK: {}}
        self._refusal = None
        self._head_began = self.loop.time()

    def on_headers_complete(self) -> None:
        self._head_began = None
        self._cancel_timers()
        has_body = self._check_framing()
        super().on_headers_complete()
        # The cycle uvicorn just made for this request; its task has not run yet.
        if type(self.cycle) is RequestResponseCycle:
            self.cycle.__class__ = SecureCycle
        self._body_pending = has_body
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False
        # A pipelined request waits, with reading paused, until the one before it is answered: its
        # body's time starts with its turn (_start_asgi_task).
        if has_body and not self.pipeline:
            self._body_began = self.loop.time()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        super()._start_asgi_task(cycle, app)
        if cycle is self.cycle and self._body_pending and self._body_began is None:
            self._body_began = self.loop.time()
            self._body_timer = self.loop.call_at(self._body_began + BODY_TIMEOUT_SECONDS, self._body_late)

    def on_message_complete(self) -> None:
        self._body_pending = False
        self._body_began = None
        self._cancel_timers()
        super().on_message_complete()

    def shutdown(self) -> None:
        """The server's graceful stop, without closing a connection a request may be arriving on.

        uvicorn closes an idle kept-alive connection at once. Its client cannot know: a request it
        sends on the connection at that moment is lost, and the front proxy does not send a POST
        again. Here every connection stays open until it has answered what it was sent: the answer
        under way, and any request that arrives, carries ``Connection: close``; an idle connection
        that gets no request is closed by its keep-alive timer, which the front proxy's own idle
        timeout for its connections to the backend undercuts, so it is the proxy that closes it.
        The listener closes at once (uvicorn), so new connections go elsewhere.
        """
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False

    def _check_framing(self) -> bool:
        """Refuse what RFC 9112 refuses; whether a body follows the head."""
        hosts = 0
        codings: list[bytes] = []
        has_body = False
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"transfer-encoding":
                codings += [coding.strip().lower() for coding in value.split(b",")]
                has_body = True
            elif name == b"content-length":
                has_body = value.strip() != b"0"  # the parser has checked that it is a number
        if hosts > 1:
            self._refuse(400, "More than one Host header")
        if hosts == 0 and self.parser.get_http_version() == "1.1":
            self._refuse(400, "Missing Host header")
        if any(coding != b"chunked" for coding in codings):
            self._refuse(501, "Transfer codings other than chunked are not implemented")
        if not self.url.startswith(b"/") and self.url != b"*":
            self._take_authority_as_host()
        return has_body

    def _take_authority_as_host(self) -> None:
        # The parser has read the target; an authority-form one (CONNECT host:port) fails here too.
        try:
            target = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            self._refuse(400, "Request target not understood")
        if (target.schema or b"").lower() not in (b"http", b"https") or target.userinfo or not target.host:
            self._refuse(400, "Request target not understood")
        host = b"[" + target.host + b"]" if b":" in target.host else target.host
        authority = host + (b":%d" % target.port if target.port else b"")
        # scope["headers"] is this very list.
        self.headers[:] = [(name, value) for name, value in self.headers if name != b"host"] + [(b"host", authority)]

    def _refuse(self, status: int, detail: str) -> NoReturn:
        self._refusal = (status, detail)
        raise _Refused

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._head_began is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # The head of a pipelined request, behind a response still under way: no room for an answer.
            self.transport.close()
            return
        self.send_error_response(408, f"Request head not received within {HEAD_TIMEOUT_SECONDS:g} s")

    def _body_late(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if self._body_began is None or self.transport.is_closing():
            return
        if cycle.response_started:
            # Answered without the whole body; what is left of it is not worth waiting for.
            cycle.keep_alive = False
            if cycle.response_complete:
                self.transport.close()
            return
        if isinstance(cycle, SecureCycle):
            cycle.body_late = True
        cycle.keep_alive = False
        cycle.message_event.set()

    def send_400_response(self, msg: str) -> None:
        status, detail = self._refusal or (400, msg)
        self.send_error_response(status, detail)

    def send_error_response(self, status: int, detail: str) -> None:
        """Answer ``status`` with ``{"detail": detail}`` and close: the connection's framing is lost."""
        self._head_began = self._body_began = None
        self._cancel_timers()
        # The headers parsed so far (all of them when the body was the bad part), last one wins.
        sent_id = next((value for name, value in reversed(self.headers or ()) if name == b"x-request-id"), None)
        request_id = request_id_for(sent_id)
        body = json.dumps({"detail": detail}).encode()
        content = [STATUS_LINE[status]]
        content.extend(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        content += [
            _protocol_headers(),
            b"x-request-id: " + request_id.encode() + b"\r\n",
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(content))
        self.transport.close()
        scope = self.scope  # None until the parser has seen a request start, then filled as it goes
        method = scope.get("method", "-") if scope else "-"
        count_refusal(method, status)
        log_access(
            request_id=request_id,
            method=method,
            path=scope.get("path", "-") if scope else "-",
            status=status,
            duration=0.0,
            client=self.client[0] if self.client else None,
        )
