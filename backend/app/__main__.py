"""Container entry point: ``python -m app``.

Validates the configuration first. On any problem it prints one block naming every bad variable
(never a secret value, no traceback) to stderr and exits 78 (EX_CONFIG, sysexits.h), so the
orchestrator shows a clear reason instead of a crash loop of stack traces.
"""

from __future__ import annotations

import sys

from app.core.config import ConfigError, load_settings
from app.server import serve

EX_CONFIG = 78


def main() -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return EX_CONFIG
    return serve(settings, "app.main:create_app_from_env")


if __name__ == "__main__":
    sys.exit(main())
