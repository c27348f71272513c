"""Running uvicorn the way the container needs it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from app.core.config import Settings
from app.core.logging import configure_logging

#: uvicorn's exit status when the server could not start (e.g. the port is taken).
STARTUP_FAILURE = 3


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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "factory": True,
        "host": "0.0.0.0",  # noqa: S104  # inside a container: the published port decides exposure
        "port": settings.PORT,
        "workers": settings.WEB_CONCURRENCY,
        "proxy_headers": True,
        "access_log": False,
        "server_header": False,
        "date_header": True,
        "log_config": None,
        "log_level": settings.LOG_LEVEL.lower(),
        "timeout_graceful_shutdown": settings.SHUTDOWN_TIMEOUT_SECONDS,
    }


def serve(settings: Settings, factory: str) -> int:
    """Serve the app built by ``factory`` (an import string); returns the process exit status."""
    configure_logging(settings)
    options = uvicorn_options(settings)
    if settings.WEB_CONCURRENCY > 1:
        # The supervisor forwards SIGTERM to its workers, waits for them and returns normally.
        uvicorn.run(factory, **options)
        return 0
    server = GracefulServer(uvicorn.Config(factory, **options))
    server.run()
    return 0 if server.started else STARTUP_FAILURE
