"""Container entry point: ``python -m app``.

Validates the configuration first. On any problem it prints one block naming every bad variable
(never a secret value, no traceback) to stderr and exits 78 (EX_CONFIG, sysexits.h), so the
orchestrator shows a clear reason instead of a crash loop of stack traces. Before that it sets
no-new-privileges on itself (app/core/confinement.py), which engines that cannot set it for a Swarm
service leave to the process.
"""

from __future__ import annotations

import sys

from app.core.config import EX_CONFIG, load_settings_or_explain
from app.core.confinement import forbid_new_privileges
from app.server import serve


def main() -> int:
    # Before anything else runs: no code of this process or its workers gains privileges by exec.
    forbid_new_privileges()
    settings = load_settings_or_explain()
    if settings is None:
        return EX_CONFIG
    return serve(settings, "app.main:create_app_from_env")


if __name__ == "__main__":
    sys.exit(main())
