"""The real server's stop (SIGTERM) as a client on a kept-alive connection sees it.

The front proxy keeps connections to the release open between requests. When the release that
served is stopped, a request the proxy sends on one of them must be answered, never cut off: the
connection stays open until it has answered, that answer closes it, and the listener refuses new
connections at once so that the proxy dials the next release. With one worker and with several.
"""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.support.server import Server


def _connect_refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


def _kept_alive(server: Server) -> http.client.HTTPConnection:
    """A connection to ``server`` that has been answered once and is kept alive, now idle."""
    server.wait_healthy()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/healthz", headers={"Host": "localhost"})
    first = conn.getresponse()
    first.read()
    assert first.status == 200
    assert (first.getheader("connection") or "").lower() != "close"
    assert conn.sock is not None
    return conn


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_kept_alive_connection_is_answered_then_closed_after_sigterm(tmp_path: object, workers: str) -> None:
    db = f"{tmp_path}/app.db"
    server = Server(
        {
            "APP_ENV": "staging",
            "DATABASE_URL": f"sqlite:///{db}",
            "SECRET_KEY": TEST_SECRET_KEY,
            "WEB_CONCURRENCY": workers,
        }
    )
    try:
        idle = _kept_alive(server)

        server.proc.send_signal(15)
        # The listener closes at once: a new connection is refused, so a client goes elsewhere.
        deadline = time.monotonic() + 2
        while not _connect_refused(server.port):
            assert time.monotonic() < deadline, "the port still accepts connections 2 s after SIGTERM"
            time.sleep(0.05)
        # The connection that was idle at the signal is still served; its answer closes it.
        idle.request(
            "POST",
            "/api/v1/items",
            body=b'{"name": "at the stop"}',
            headers={"Host": "localhost", "Content-Type": "application/json"},
        )
        answer = idle.getresponse()
        assert answer.status == 201, answer.read()
        assert answer.read()
        assert answer.getheader("connection", "").lower() == "close"
        assert idle.sock is None or idle.sock.recv(1) == b"", "the server closes the connection after its answer"
        # Once no connection is left, it exits cleanly.
        out, err = server.terminate(timeout=15)
        assert server.proc.returncode == 0, (out, err)
        assert "Traceback" not in out + err
    finally:
        server.stop()


def test_an_idle_connection_is_closed_by_its_keep_alive_timer_after_sigterm(tmp_path: object) -> None:
    db = f"{tmp_path}/app.db"
    server = Server({"APP_ENV": "staging", "DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": TEST_SECRET_KEY})
    try:
        idle = _kept_alive(server)
        started = time.monotonic()
        server.proc.send_signal(15)
        time.sleep(0.5)
        assert server.proc.poll() is None, "the server waits for the connection it may still be sent a request on"
        # Nothing arrives: the keep-alive timer closes it (the proxy's shorter idle timeout would have first).
        assert idle.sock is not None
        assert idle.sock.recv(1) == b""
        server.terminate(timeout=15)
        assert server.proc.returncode == 0
        assert time.monotonic() - started < 8
    finally:
        server.stop()
