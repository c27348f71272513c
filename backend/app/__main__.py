"""Container entry point: ``python -m app``.

Validates the configuration first. On any problem it prints one block naming every bad variable
(never a secret value, no traceback) to stderr and exits 78 (EX_CONFIG, sysexits.h), so the
orchestrator shows a clear reason instead of a crash loop of stack traces.
"""

from __future__ import annotations

import sys

from app.core.config import ConfigError, Settings, load_settings
from app.server import serve

EX_CONFIG = 78


def load_settings_or_explain() -> Settings | None:
    """The settings, or None once the reason they cannot be loaded is on stderr (never a value)."""
    try:
        return load_settings()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
    except Exception as exc:
        # An error nobody foresaw may quote the environment in its message: name its type only.
        print(
            f"Configuration error: the backend cannot start: {type(exc).__name__} while reading the "
            "environment (details withheld: they may quote a secret value).",
            file=sys.stderr,
            flush=True,
        )
    return None


def main() -> int:
    settings = load_settings_or_explain()
    if settings is None:
        return EX_CONFIG
    return serve(settings, "app.main:create_app_from_env")


if __name__ == "__main__":
    sys.exit(main())
