"""The metrics port of the real server, with one worker and with two: one consistent set of metrics.

With ``WEB_CONCURRENCY`` 2, uvicorn's workers are processes of their own; each writes its metrics to
files in the multiprocess directory and the parent serves their sum. The tests send requests over
new connections, several at a time, so that both workers take some, and check that the metrics
port counts every request once, whichever worker answered it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from app.core.metrics import FLUSH_SECONDS
from app.metrics_server import MAX_CONNECTIONS, directory_for
from tests.conftest import TEST_SECRET_KEY
from tests.support.metrics import Scrape
from tests.support.postgres import PostgresCluster, free_port
from tests.support.raw_http import exchange
from tests.support.server import EX_CONFIG, Server, run_entry

REQUESTS = "backend_http_requests_total"
DIGEST = "sha256:" + "ab" * 32


def scrape(server: Server) -> Scrape:
    return Scrape(server.metrics())


def wait_until(check: Callable[[], bool], what: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def get_on_a_new_connection(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def worker_files(server: Server, kind: str) -> set[int]:
    """The pids that wrote files of ``kind`` (counter, histogram, gauge_livesum, ...)."""
    names = os.listdir(directory_for(server.metrics_port))
    return {int(m.group(1)) for m in (re.fullmatch(rf"{kind}_(\d+)\.db", n) for n in names) if m}


def load(server: Server, paths: list[str], workers: int) -> int:
    """Send ``paths`` eight at a time, over and over until ``workers`` workers have counted some of them.

    The kernel hands each connection to a worker as it likes (often the same one, on an idle
    machine); how many requests that took is returned.
    """
    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(50):
            statuses = list(pool.map(lambda path: get_on_a_new_connection(server.port, path), paths))
            assert all(status in (200, 404) for status in statuses), statuses
            sent += len(paths)
            if len(worker_files(server, "counter")) == workers:
                return sent
    pytest.fail(f"{sent} requests, and not every one of the {workers} workers answered one")


def two_workers_loaded(make_server: type[Server], server_env: dict[str, str]) -> tuple[Server, int]:
    """A server of two workers, both started, that both answered /healthz requests; how many were sent."""
    server = make_server({**server_env, "WEB_CONCURRENCY": "2"})
    server.wait_healthy()
    wait_until(lambda: len(worker_files(server, "gauge_livesum")) == 2, "both workers started")
    return server, load(server, ["/healthz"] * 40, 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_every_request_is_counted_once_whichever_worker_answered(
    make_server: type[Server], server_env: dict[str, str], workers: int
) -> None:
    server = make_server({**server_env, "WEB_CONCURRENCY": str(workers), "IMAGE_DIGEST": DIGEST})
    server.wait_healthy()
    rounds = load(server, [f"/api/v1/items/{900000 + i}" for i in range(20)] + ["/healthz"] * 20, workers) // 40

    # A worker hands its counts to the metrics port once a second: a scrape right after may be early.
    def counted() -> bool:
        seen = scrape(server)
        items = seen.value(REQUESTS, route="/api/v1/items/{item_id}", method="GET", status="4xx")
        return items == seen.value(REQUESTS, route="/healthz", method="GET", status="2xx") == 20 * rounds

    wait_until(counted, "every request counted")
    # And no request counted twice: a flush later, still the same.
    time.sleep(FLUSH_SECONDS * 1.5)
    assert counted()
    seen = scrape(server)
    assert seen.value("backend_http_request_duration_seconds_count", route="/healthz", status="2xx") == 20 * rounds
    # wait_healthy asked /readyz: one of the workers checked, and the set says what the last check found.
    assert seen.value("backend_ready") == 1
    assert seen.value("backend_http_requests_in_flight") == 0
    assert seen.value("backend_db_pool_max_connections") == 15 * workers
    assert seen.value("backend_workers") == workers
    assert seen.series("backend_build_info") == [{"version": "0.0.0-dev", "git_sha": "unknown", "image_digest": DIGEST}]
    assert seen.value("backend_build_info") == 1
    # One set: no sample is split by worker.
    assert all("pid" not in labels for _, labels, _ in seen.samples())
    assert len(worker_files(server, "counter")) == workers, "each worker served some of the requests"


def test_a_worker_that_dies_is_replaced_and_its_counts_are_kept(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server, sent = two_workers_loaded(make_server, server_env)
    wait_until(lambda: scrape(server).value(REQUESTS, route="/healthz") == sent, "every request counted")
    victim = min(worker_files(server, "gauge_livesum"))
    os.kill(victim, signal.SIGKILL)

    # uvicorn starts a new worker; the dead one's live gauges leave the set, its counts stay in it.
    wait_until(lambda: len(worker_files(server, "gauge_livesum") - {victim}) == 2, "a new worker started", 30)
    seen = scrape(server)
    assert victim not in worker_files(server, "gauge_livesum")
    assert seen.value(REQUESTS, route="/healthz") == sent
    assert seen.value("backend_http_requests_in_flight") == 0
    # The new worker samples its pool as its lifespan starts, a moment after its files appear.
    wait_until(lambda: scrape(server).value("backend_db_pool_max_connections") == 30, "the new worker's pool")
    assert get_on_a_new_connection(server.port, "/healthz") == 200
    wait_until(lambda: scrape(server).value(REQUESTS, route="/healthz") == sent + 1, "the next request counted")


def test_a_request_shows_in_a_scrape_within_about_a_second(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    assert get_on_a_new_connection(server.port, "/healthz") == 200
    answered = time.monotonic()
    # The worker flushes once a second; a second more for a loaded machine and the scrapes' own time.
    wait_until(lambda: scrape(server).value(REQUESTS, route="/healthz") == 1, "the request scraped", FLUSH_SECONDS + 1)
    assert time.monotonic() - answered <= FLUSH_SECONDS + 1


def test_a_worker_stopped_by_sigterm_flushes_its_counts_first(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    # Both workers answer some; the last of these were answered within the second before the
    # signal, after their worker's last timed flush: only the flush at shutdown hands them over.
    server, sent = two_workers_loaded(make_server, server_env)
    stopped = worker_files(server, "gauge_livesum")
    for pid in stopped:
        os.kill(pid, signal.SIGTERM)

    # uvicorn starts new workers; the stopped ones' counts are in their files, and in the set.
    wait_until(lambda: len(worker_files(server, "gauge_livesum") - stopped) == 2, "new workers started", 30)
    assert stopped <= worker_files(server, "counter")
    seen = scrape(server)
    assert not worker_files(server, "gauge_livesum") & stopped, "a scrape drops the stopped workers' live gauges"
    assert seen.value(REQUESTS, route="/healthz") == sent
    assert seen.value("backend_http_request_duration_seconds_count", route="/healthz") == sent
    assert seen.value("backend_http_requests_in_flight") == 0


def test_what_the_http_protocol_answers_itself_is_counted_not_timed(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    assert exchange(server.port, b"GARBAGE\r\n\r\n").status == 400
    te = b"POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert exchange(server.port, te).status == 501
    wait_until(lambda: scrape(server).value(REQUESTS, route="<unmatched>", status="5xx") == 1, "the 501 counted")
    seen = scrape(server)
    # Refused before the method was read: neither has one.
    assert seen.value(REQUESTS, route="<unmatched>", method="other", status="4xx") == 1
    assert seen.value(REQUESTS, route="<unmatched>", method="other", status="5xx") == 1
    assert seen.value("backend_http_request_duration_seconds_count", route="<unmatched>") is None


def test_stale_files_are_removed_at_start_and_the_directory_at_exit(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    metrics_port = free_port()
    directory = Path(directory_for(metrics_port))
    directory.mkdir(exist_ok=True)
    # What a killed run would leave: counts that must not be added to the new run's.
    stale = MmapedDict(str(directory / "counter_4194301.db"))  # type: ignore[no-untyped-call]
    names, values = ["route", "method", "status"], ["/healthz", "GET", "2xx"]
    help_text = "Requests answered, by route template, method and status class"
    key = mmap_key("backend_http_requests", "backend_http_requests_total", names, values, help_text)
    stale.write_value(key, 1000.0, 0.0)  # type: ignore[no-untyped-call]
    stale.close()  # type: ignore[no-untyped-call]

    server = make_server({**server_env, "METRICS_PORT": str(metrics_port)})
    server.wait_healthy()
    assert not (directory / "counter_4194301.db").exists()
    assert get_on_a_new_connection(server.port, "/healthz") == 200
    wait_until(lambda: scrape(server).value(REQUESTS, route="/healthz") == 1, "the one request counted")
    assert server.terminate()[1] == ""
    assert server.proc.returncode == 0
    assert not directory.exists()


def test_the_metrics_port_serves_metrics_only_and_the_app_port_none(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    for path in ("/", "/healthz", "/metrics/x"):
        conn = http.client.HTTPConnection("127.0.0.1", server.metrics_port, timeout=5)
        conn.request("GET", path)
        assert conn.getresponse().status == 404
        conn.close()
    assert server.get("/metrics").status == 404
    assert scrape(server).value("backend_build_info") == 1
    out, err = server.terminate()
    # Scrapes leave no line: they are not the app's requests.
    access = [json.loads(line) for line in out.splitlines() if '"app.access"' in line]
    assert "/metrics/x" not in {r["path"] for r in access}
    assert err == ""


def test_at_most_a_few_scrapes_at_once_and_a_silent_one_takes_no_slot_for_long(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    server.wait_healthy()
    idle = [socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", server.metrics_port), timeout=5)
        extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert extra.recv(1024) == b"", "a connection beyond the limit is closed at once"
        extra.close()
    finally:
        for sock in idle:
            sock.close()

    def served() -> bool:
        # Until each slot's thread has seen its client leave, a scrape is still one beyond the limit.
        try:
            return scrape(server).value("backend_build_info") == 1
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return False

    wait_until(served, "the slots freed once the clients left")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_port_in_use_exits_78_naming_metrics_port(server_env: dict[str, str], workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104  # where the backend listens
        taken.listen()
        port = taken.getsockname()[1]
        result = run_entry({**server_env, "METRICS_PORT": str(port), "WEB_CONCURRENCY": workers})
    assert result.returncode == EX_CONFIG
    assert result.stderr == (
        f"Configuration error: the backend cannot start: METRICS_PORT={port} is already in use; "
        "stop what listens there or set METRICS_PORT to a free port.\n"
    )
    assert '"msg": "starting"' not in result.stdout


def test_the_same_port_for_the_app_and_the_metrics_exits_78(server_env: dict[str, str]) -> None:
    port = str(free_port())
    result = run_entry({**server_env, "PORT": port, "METRICS_PORT": port})
    assert result.returncode == EX_CONFIG
    assert f"  - METRICS_PORT: the same port as PORT ({port}); the metrics need a port of their own" in result.stderr


def test_no_secret_in_any_metric_of_a_server_on_postgresql(
    make_server: type[Server], postgres: PostgresCluster
) -> None:
    server = make_server({"APP_ENV": "staging", "DATABASE_URL": postgres.url, "SECRET_KEY": TEST_SECRET_KEY})
    server.wait_healthy(within=30)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", f"/{TEST_SECRET_KEY}?password={postgres.password}", headers={"Host": "localhost"})
    assert conn.getresponse().status == 404
    conn.close()
    text = scrape(server).text
    assert "backend_db_pool_connections" in text
    for value in (TEST_SECRET_KEY, TEST_SECRET_KEY[:8], postgres.password, postgres.url):
        assert value not in text
