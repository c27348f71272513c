"""The backend as a real process: ``python -m app`` (or another entry) on a free loopback port."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import pytest

from tests.support.postgres import free_port

BACKEND_DIR = Path(__file__).resolve().parents[2]
EX_CONFIG = 78


def run_entry(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run an entry point to its end with exactly ``env`` (plus PATH, and a free METRICS_PORT unless set)."""
    return subprocess.run(
        [sys.executable, "-m", *(args or ("app",))],
        cwd=BACKEND_DIR,
        env={"PATH": os.environ.get("PATH", ""), "METRICS_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Server:
    """A real server process on a free loopback port, its metrics on another (unless ``env`` sets them).

    Its output goes to files, not pipes: a server under load writes more log lines than a pipe
    holds, and would stall on a full one while nobody reads it.
    """

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = int(env.get("PORT") or free_port())
        self.metrics_port = int(env.get("METRICS_PORT") or free_port())
        # Anonymous files, gone with this object; read back by _output, as often as asked.
        self._out: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self._err: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *(args or ("app",))],
            cwd=BACKEND_DIR,
            env={
                "PATH": os.environ.get("PATH", ""),
                **env,
                "PORT": str(self.port),
                "METRICS_PORT": str(self.metrics_port),
            },
            stdout=self._out,
            stderr=self._err,
            text=True,
            # A group of its own: stop() ends its worker processes too, which a SIGKILL of the
            # supervisor alone would leave running (still holding the port).
            start_new_session=True,
        )

    def get(self, path: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path)
        return conn.getresponse()

    def metrics(self) -> str:
        """What the metrics port answers at /metrics (Prometheus' text format)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=5)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 200, response.status
        return response.read().decode()

    def wait_healthy(self, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                if self.get("/readyz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail("server did not become ready")

    def terminate(self, timeout: float = 20) -> tuple[str, str]:
        """Stop it the way the container engine does (SIGTERM); its output, every log line included."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout)
        return self.output()

    def stop(self) -> tuple[str, str]:
        """Kill it and its workers if they still run; its output so far."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return self.output()

    def output(self) -> tuple[str, str]:
        """Everything it wrote so far: (stdout, stderr)."""
        texts = []
        for stream in (self._out, self._err):
            stream.seek(0)
            texts.append(stream.read())
        return texts[0], texts[1]
