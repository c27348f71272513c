"""Running uvicorn the way the container needs it."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from app.core.config import EX_CONFIG, Settings, misspelled_settings
from app.core.logging import configure_logging
from app.http_protocol import KEEP_ALIVE_SECONDS
from app.metrics_server import METRICS_PATH, MetricsServer

#: uvicorn's exit status when the server could not start for another reason than its port.
STARTUP_FAILURE = 3
#: Where the server listens: inside a container, the published port decides exposure.
LISTEN_HOST = "0.0.0.0"  # noqa: S104

log = logging.getLogger("app.config")
metrics_log = logging.getLogger("app.metrics")


class GracefulServer(uvicorn.Server):
    """uvicorn's server without re-raising the stop signal once it has shut down gracefully.

    uvicorn re-raises a captured SIGTERM after shutdown, so the process dies *by* the signal
    (status 143 in Docker) even when every request finished. A clean, complete shutdown is a
    success, so the process exits 0 instead.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class DrainingMultiprocess(Multiprocess):
    """uvicorn's supervisor, which gives up its copy of the listening socket before it stops the workers.

    Each worker closes its own copy when it begins to shut down; while the supervisor still held
    one, the port went on accepting connections that no process would ever read, until the
    supervisor exited and the kernel reset them. Closed here, new connections are refused at once
    and a client (the front proxy) takes them elsewhere.
    """

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "factory": True,
        "http": "app.http_protocol:SecureHttpToolsProtocol",
        "host": LISTEN_HOST,
        "port": settings.PORT,
        "workers": settings.WEB_CONCURRENCY,
        "proxy_headers": True,
        "access_log": False,
        "server_header": False,
        "date_header": True,
        "log_config": None,
        "log_level": settings.LOG_LEVEL.lower(),
        "timeout_keep_alive": KEEP_ALIVE_SECONDS,
        "timeout_graceful_shutdown": settings.SHUTDOWN_TIMEOUT_SECONDS,
    }


class PortUnavailableError(Exception):
    """A listening socket cannot be had; ``str()`` names the setting (PORT, METRICS_PORT) and what to do."""


def _unavailable(name: str, port: int, exc: OSError) -> PortUnavailableError:
    if exc.errno == errno.EADDRINUSE:
        reason = f"{name}={port} is already in use; stop what listens there or set {name} to a free port"
    elif exc.errno == errno.EACCES:
        reason = f"{name}={port} may not be bound by this user (ports below 1024 need privileges); use 1024 or above"
    else:
        reason = f"{name}={port} cannot be bound ({errno.errorcode.get(exc.errno or 0, 'error')})"
    return PortUnavailableError(f"Configuration error: the backend cannot start: {reason}.")


def bind_listener(port: int) -> socket.socket:
    """The listening socket on ``port``, bound as uvicorn binds it, before anything else starts.

    Bound here rather than by uvicorn so that a port in use is a configuration error that names
    PORT (uvicorn logs the OS error and exits 3), and before the app's start-up runs.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LISTEN_HOST, port))
    except OSError as exc:
        sock.close()
        raise _unavailable("PORT", port, exc) from None
    sock.set_inheritable(True)
    return sock


def bind_metrics(port: int) -> MetricsServer:
    """The metrics port's server (app/metrics_server.py), bound; a port in use names METRICS_PORT."""
    try:
        return MetricsServer(port, LISTEN_HOST)
    except OSError as exc:
        raise _unavailable("METRICS_PORT", port, exc) from None


def serve(settings: Settings, factory: str) -> int:
    """Serve the app built by ``factory`` (an import string); returns the process exit status."""
    configure_logging(settings)
    for name, meant in misspelled_settings():
        log.warning(
            "%s is not a setting the backend reads and is ignored: did you mean %s? (production refuses to start)",
            name,
            meant,
            extra={"event": {"variable": name, "meant": meant}},
        )
    try:
        sock = bind_listener(settings.PORT)
    except PortUnavailableError as exc:
        print(exc, file=sys.stderr, flush=True)
        return EX_CONFIG
    try:
        metrics = bind_metrics(settings.METRICS_PORT)
    except PortUnavailableError as exc:
        sock.close()
        print(exc, file=sys.stderr, flush=True)
        return EX_CONFIG
    # Before uvicorn imports the app (and with it prometheus_client), and before any worker starts.
    metrics.start(settings)
    metrics_log.info("metrics on %s:%d%s", LISTEN_HOST, settings.METRICS_PORT, METRICS_PATH)
    try:
        return _run(settings, factory, sock)
    finally:
        metrics.close()


def _run(settings: Settings, factory: str, sock: socket.socket) -> int:
    config = uvicorn.Config(factory, **uvicorn_options(settings))
    if settings.WEB_CONCURRENCY > 1:
        # What uvicorn.run does for workers, with the socket bound above. The supervisor forwards
        # SIGTERM to its workers, waits for them and returns normally.
        log.info("listening on %s:%d with %d workers", LISTEN_HOST, settings.PORT, settings.WEB_CONCURRENCY)
        DrainingMultiprocess(config, sockets=[sock]).run()
        return 0
    server = GracefulServer(config)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE
