"""Container entry point: ``python -m app``.

Validates the configuration first. On any problem it prints one block naming every bad variable
(never a secret value, no traceback) to stderr and exits 78 (EX_CONFIG, sysexits.h), so the
orchestrator shows a clear reason instead of a crash loop of stack traces.
"""

from __future__ import annotations

import sys

import uvicorn

from app.core.config import ConfigError, Settings, load_settings
from app.core.logging import configure_logging

EX_CONFIG = 78


def serve(settings: Settings, factory: str) -> None:
    """Run uvicorn for the app built by ``factory`` (an import string)."""
    configure_logging(settings)
    uvicorn.run(
        factory,
        factory=True,
        host="0.0.0.0",  # noqa: S104  # inside a container: the published port decides exposure
        port=settings.PORT,
        workers=settings.WEB_CONCURRENCY,
        proxy_headers=True,
        access_log=False,
        server_header=False,
        date_header=True,
        log_config=None,
        log_level=settings.LOG_LEVEL.lower(),
        timeout_graceful_shutdown=settings.SHUTDOWN_TIMEOUT_SECONDS,
    )


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return EX_CONFIG
    serve(settings, "app.main:create_app_from_env")
    return 0


if __name__ == "__main__":
    sys.exit(main())
