"""What the process does and sees of its own confinement.

Docker 20.10 cannot set no-new-privileges on a Swarm service (the engine has no such field for
services before API 1.46), so the process sets it on itself before it serves: from then on no
``execve`` (of a setuid binary or a file with capabilities) can raise its privileges, and the
kernel reports ``NoNewPrivs: 1`` in ``/proc/<pid>/status``. The same facts, read back from the
kernel, are what the deploy records as the running task's hardening: observed, never copied from
configuration.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

#: ``PR_SET_NO_NEW_PRIVS`` from <linux/prctl.h>.
PR_SET_NO_NEW_PRIVS = 38

STATUS_FILE = Path("/proc/self/status")


def forbid_new_privileges() -> bool:
    """Set no-new-privileges on this process (inherited by every child); True once the kernel took it.

    Irreversible by design. Outside Linux there is no such switch, and the answer is False.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) == 0


@dataclass(frozen=True)
class Confinement:
    """The process's confinement as the kernel reports it."""

    uid: int
    gid: int
    no_new_privileges: bool
    read_only_root: bool
    #: ``CapEff`` and ``CapBnd`` as the kernel prints them (hex); all zero when every capability is dropped.
    effective_capabilities: str
    bounding_capabilities: str

    @property
    def all_capabilities_dropped(self) -> bool:
        # An empty bounding set: no capability can be held, now or after any exec.
        return int(self.bounding_capabilities, 16) == 0 and int(self.effective_capabilities, 16) == 0


def observe(status_file: Path = STATUS_FILE, root: str = "/") -> Confinement:
    """Read the facts from the kernel: ``/proc/self/status`` and the root mount's flags."""
    fields: dict[str, str] = {}
    for line in status_file.read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return Confinement(
        uid=os.getuid(),
        gid=os.getgid(),
        no_new_privileges=fields.get("NoNewPrivs") == "1",
        read_only_root=bool(os.statvfs(root).f_flag & os.ST_RDONLY),
        effective_capabilities=fields.get("CapEff", "ffffffffffffffff"),
        bounding_capabilities=fields.get("CapBnd", "ffffffffffffffff"),
    )
