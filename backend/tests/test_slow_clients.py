"""Slow clients against the real server: each is cut off within its bound, and the rest are served.

Twenty connections trickle a request a byte at a time for up to 15 s (ten their head, ten their
body) and one sends nothing at all, while ordinary requests keep coming. Before the deadlines of
app/http_protocol.py every one of them held its connection open for as long as it kept sending.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass

from app.http_protocol import BODY_TIMEOUT_SECONDS, HEAD_TIMEOUT_SECONDS, KEEP_ALIVE_SECONDS
from tests.support.raw_http import parse_response
from tests.support.server import Server

TRICKLE_SECONDS = 15.0
BYTE_EVERY_SECONDS = 0.5
# A deadline is met when the answer comes at the bound, give or take a shared machine's delay.
SLACK_SECONDS = 2.0


@dataclass
class Slow:
    """One slow client: what it sends at once, then what it trickles; what came back, and when."""

    head: bytes
    trickle: bytes
    started: float = 0.0
    ended: float | None = None
    received: bytes = b""

    def run(self, port: int) -> None:
        """Send the head, then a byte of the trickle every 0.5 s, reading all the while, until closed."""
        with socket.create_connection(("127.0.0.1", port), timeout=BYTE_EVERY_SECONDS) as sock:
            self.started = time.monotonic()
            sock.sendall(self.head)
            sent = 0
            while time.monotonic() - self.started < TRICKLE_SECONDS:
                try:
                    if sent < len(self.trickle):
                        sock.sendall(self.trickle[sent : sent + 1])
                        sent += 1
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                except OSError:  # reset by the server after its answer
                    chunk = b""
                if not chunk:
                    self.ended = time.monotonic()
                    return
                self.received += chunk

    @property
    def after(self) -> float:
        assert self.ended is not None, "still open when the client gave up"
        return self.ended - self.started


def assert_cut_off(slows: list[Slow], bound: float, detail: str) -> None:
    """Each got 408 with ``detail`` and its connection closed, at ``bound`` after it began."""
    for slow in slows:
        response = parse_response(slow.received)
        assert (response.status, json.loads(response.body)) == (408, {"detail": detail})
        assert response.headers["connection"] == "close"
        assert bound - 0.1 < slow.after < bound + SLACK_SECONDS


def idle(port: int, result: list[float]) -> None:
    """A connection that sends nothing: how long until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=TRICKLE_SECONDS) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        result.append(time.monotonic() - started)


def test_slow_heads_and_bodies_are_cut_off_within_their_bounds_while_others_are_served(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    slow_heads = [Slow(b"", b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"x" * 60) for _ in range(10)]
    body = json.dumps({"name": "slow", "description": "d" * 40}).encode()
    head = (
        "POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    slow_bodies = [Slow(head.encode(), body) for _ in range(10)]
    # The body's time starts with its request's turn: behind an answered GET on the same connection.
    pipelined = Slow(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n" + head.encode(), body)
    idle_after: list[float] = []
    threads = [
        threading.Thread(target=slow.run, args=(server.port,)) for slow in [*slow_heads, *slow_bodies, pipelined]
    ]
    threads.append(threading.Thread(target=idle, args=(server.port, idle_after)))
    for thread in threads:
        thread.start()

    latencies: list[float] = []
    deadline = time.monotonic() + TRICKLE_SECONDS
    while time.monotonic() < deadline:
        sent = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request("POST", "/api/v1/items", body=b'{"name": "normal"}', headers={"content-type": "application/json"})
        created = conn.getresponse()
        assert (created.status, created.read()[:1]) == (201, b"{")
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        latencies.append(time.monotonic() - sent)
        time.sleep(0.1)
    for thread in threads:
        thread.join(timeout=10)

    assert len(latencies) > 50
    assert max(latencies) < 1.0, "a slow client held up the others"
    assert_cut_off(slow_heads, HEAD_TIMEOUT_SECONDS, f"Request head not received within {HEAD_TIMEOUT_SECONDS:g} s")
    assert_cut_off(slow_bodies, BODY_TIMEOUT_SECONDS, f"Request body not received within {BODY_TIMEOUT_SECONDS:g} s")
    assert pipelined.received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert pipelined.received.count(b"HTTP/1.1 408 Request Timeout\r\n") == 1
    assert BODY_TIMEOUT_SECONDS - 0.1 < pipelined.after < BODY_TIMEOUT_SECONDS + SLACK_SECONDS
    assert len(idle_after) == 1
    assert KEEP_ALIVE_SECONDS - 0.1 < idle_after[0] < KEEP_ALIVE_SECONDS + SLACK_SECONDS

    out, err = server.terminate()
    assert "Traceback" not in out + err
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    statuses = [r["status"] for r in records if r["logger"] == "app.access" and r["method"] == "POST"]
    assert statuses.count(408) == 11
    assert {r["status"] for r in records if r["logger"] == "app.access" and r["path"] == "-"} == {408}
