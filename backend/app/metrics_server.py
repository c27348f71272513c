"""The metrics port: Prometheus' text format at ``/metrics`` on ``METRICS_PORT``, from the parent process.

uvicorn with ``WEB_CONCURRENCY`` > 1 runs its workers as processes under a supervisor; each request
lands in one of them. So each worker writes its metrics to files (prometheus_client's multiprocess
mode) in a directory on the tmpfs ``/tmp`` (the root file system is read-only), and this server,
in the supervisor (or, with one worker, in the server process itself), reads them all at each
scrape: one consistent set, whichever worker handled what.

The directory is named after the metrics port, which this process holds: nobody else can be using
it, so it is emptied at start (a crashed run's files would count again) and removed at exit.
prometheus_client chooses between in-memory and file-backed values when it is first imported, from
``PROMETHEUS_MULTIPROC_DIR``: :func:`prepare_directory` sets it before that, and refuses to run once
it is too late. So nothing imported before it may import prometheus_client (app.core.metrics is
imported by the app factory, which uvicorn loads afterwards).

The port is not the app's: the front proxy forwards only the app's port, and no host port publishes
this one. Its server is small on purpose: a handful of connections at once (Prometheus scrapes one
at a time), each with a deadline, in threads of its own that never hold up a request of the app.
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

if TYPE_CHECKING:
    from app.core.config import Settings

#: The path Prometheus scrapes; every other path answers 404.
METRICS_PATH = "/metrics"
#: Scrapes served at once; a connection beyond these is closed at once.
MAX_CONNECTIONS = 4
#: Seconds a scrape connection may stay silent.
CONNECTION_TIMEOUT_SECONDS = 10
#: prometheus_client's switch to its multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

StartResponse = Callable[[str, list[tuple[str, str]]], object]
# What socketserver hands a TCP server's handlers (typeshed's _RequestType), and the peer's address.
Request = socket.socket | tuple[bytes, socket.socket]
Address = tuple[str, int]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def directory_for(port: int) -> str:
    """The multiprocess directory of the server that holds metrics port ``port``."""
    return os.path.join(tempfile.gettempdir(), f"backend-metrics-{port}")


def prepare_directory(port: int) -> str:
    """Empty :func:`directory_for` ``port`` and point prometheus_client (and every worker) at it.

    Call it while holding the port, before anything imports prometheus_client.
    """
    if "prometheus_client" in sys.modules:
        msg = "prometheus_client was imported before its multiprocess directory was set: the metrics would be lost"
        raise RuntimeError(msg)
    directory = directory_for(port)
    shutil.rmtree(directory, ignore_errors=True)
    os.mkdir(directory, 0o700)
    # Inherited by the worker processes, which uvicorn starts after this.
    os.environ[MULTIPROC_ENV] = directory
    return directory


class _Handler(WSGIRequestHandler):
    # A connection that sends nothing is dropped after this (socketserver's StreamRequestHandler).
    timeout = CONNECTION_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: object) -> None:
        # The scrapes are not the app's requests: no line for them on stdout or stderr.
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, port: int, host: str) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__((host, port), _Handler)

    def server_bind(self) -> None:
        # HTTPServer's would look up the listening address's host name (socket.getfqdn): a DNS query
        # at start that can take seconds where no resolver answers.
        socketserver.TCPServer.server_bind(self)
        self.server_name = "localhost"
        self.server_port = self.server_address[1]
        self.setup_environ()

    def process_request(self, request: Request, client_address: Address) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Request, client_address: Address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Request, client_address: Address) -> None:
        # A client that went away mid-answer; socketserver would print a traceback to stderr.
        pass


def _only_metrics_path(app: WsgiApp) -> WsgiApp:
    def serve(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [f"Not found: metrics are at {METRICS_PATH}\n".encode()]
        return app(environ, start_response)

    return serve


class MetricsServer:
    """The metrics port's HTTP server, bound at once (raising OSError as ``bind`` does), serving once started."""

    def __init__(self, port: int, host: str) -> None:
        self.port = port
        self._server = _Server(port, host)
        self._thread: threading.Thread | None = None
        self.directory: str | None = None

    def start(self, settings: Settings) -> None:
        """Serve every worker's metrics and the build's, from now on, in a thread of its own."""
        self.directory = prepare_directory(self.port)
        # Only now: the import makes prometheus_client choose its mode (see prepare_directory).
        from prometheus_client import make_wsgi_app  # noqa: PLC0415

        from app.core.metrics import process_registry  # noqa: PLC0415

        self._server.set_app(_only_metrics_path(make_wsgi_app(process_registry(self.directory, settings))))
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, free the port, remove the workers' files."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
