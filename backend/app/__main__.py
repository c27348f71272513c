"""Container entry point: ``python -m app``.

Validates the configuration first. On any problem it prints one block naming every bad variable
(never a secret value, no traceback) to stderr and exits 78 (EX_CONFIG, sysexits.h), so the
orchestrator shows a clear reason instead of a crash loop of stack traces. Before that it sets
no-new-privileges on itself (app/core/confinement.py), which engines that cannot set it for a Swarm
service leave to the process.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_before_serving(signum: int, frame: FrameType | None) -> None:
    # Nothing is served yet, so nothing is lost: stop at once, cleanly.
    raise SystemExit(0)


# First, before the imports below (they take a while): as PID 1 of a container the process gets no
# signal it has no handler for, so a SIGTERM sent while it starts (a release deleted before it
# served) would be ignored until the engine's SIGKILL. uvicorn installs its graceful handler once it
# serves.
signal.signal(signal.SIGTERM, _stop_before_serving)

from app.core.config import EX_CONFIG, load_settings_or_explain  # noqa: E402
from app.core.confinement import forbid_new_privileges  # noqa: E402
from app.server import serve  # noqa: E402


def main() -> int:
    # Before anything else runs: no code of this process or its workers gains privileges by exec.
    forbid_new_privileges()
    settings = load_settings_or_explain()
    if settings is None:
        return EX_CONFIG
    return serve(settings, "app.main:create_app_from_env")


if __name__ == "__main__":
    sys.exit(main())
