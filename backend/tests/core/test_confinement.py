"""No-new-privileges set by the process itself, and its confinement as the kernel reports it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from app.core.confinement import observe
from tests.conftest import TEST_SECRET_KEY
from tests.support.server import BACKEND_DIR, Server


def status_of(pid: int | str) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {name: value.strip() for name, _, value in (line.partition(":") for line in lines)}


def test_observe_reads_the_kernel_status(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nNoNewPrivs:\t1\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n")
    seen = observe(status, root=str(tmp_path))
    assert (seen.uid, seen.gid) == (os.getuid(), os.getgid())
    assert seen.no_new_privileges is True
    assert seen.all_capabilities_dropped is True
    assert seen.read_only_root is False


def test_capabilities_held_or_unknown_are_not_dropped(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("NoNewPrivs:\t0\nCapEff:\t0000000000000000\nCapBnd:\t000001ffffffffff\n")
    assert observe(status).all_capabilities_dropped is False
    assert observe(status).no_new_privileges is False
    status.write_text("Name:\tpython\n")
    assert observe(status).all_capabilities_dropped is False


def test_forbid_new_privileges_is_what_the_kernel_then_reports() -> None:
    # In a child: the flag cannot be cleared again, and the test process keeps its own.
    script = "from app.core.confinement import *; print(forbid_new_privileges(), observe().no_new_privileges)"
    result = subprocess.run([sys.executable, "-c", script], cwd=BACKEND_DIR, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]


def test_the_served_process_runs_with_no_new_privileges(make_server: type[Server], server_env: dict[str, str]) -> None:
    server = make_server({**server_env, "WEB_CONCURRENCY": "2"})
    server.wait_healthy()
    assert status_of(server.proc.pid)["NoNewPrivs"] == "1"
    # Inherited by the worker processes that serve the requests.
    children = Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split()
    assert children
    assert {status_of(child)["NoNewPrivs"] for child in children} == {"1"}
    assert TEST_SECRET_KEY not in "".join(server.terminate())


def test_hardening_route_answers_what_the_kernel_says(client: TestClient) -> None:
    response = client.get("/hardening")
    assert response.status_code == 200
    seen = observe()
    assert response.json() == {
        "user": f"{os.getuid()}:{os.getgid()}",
        "noNewPrivileges": seen.no_new_privileges,
        "readOnlyRootFilesystem": seen.read_only_root,
        "allCapabilitiesDropped": seen.all_capabilities_dropped,
        "effectiveCapabilities": seen.effective_capabilities,
        "boundingCapabilities": seen.bounding_capabilities,
    }
