"""Liveness, readiness (PostgreSQL up, down at start, coming back, going away; SQLite) and version."""

from __future__ import annotations

import platform
import socket
import time

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import READY_WITHIN_SECONDS, ClientFactory
from tests.support.postgres import PostgresCluster


def wait_for_status(client: TestClient, path: str, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        response = client.get(path)
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def test_healthz_touches_nothing(make_client: ClientFactory, stopped_postgres: PostgresCluster) -> None:
    client = make_client(APP_ENV="staging", DATABASE_URL=stopped_postgres.url, wait_ready=False)
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 0.5
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_with_postgres_up(make_client: ClientFactory, postgres_url: str) -> None:
    client = make_client(APP_ENV="staging", DATABASE_URL=postgres_url, wait_ready=False)
    response = wait_for_status(client, "/readyz", 200, READY_WITHIN_SECONDS)
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_ready_with_sqlite(client: TestClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


def test_not_ready_with_unusable_sqlite_path(make_client: ClientFactory) -> None:
    client = make_client(DATABASE_URL="sqlite:////nonexistent-dir/sub/app.db", wait_ready=False)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "reason": "database unavailable (OperationalError)"}


def test_database_down_at_start_then_back(make_client: ClientFactory, stopped_postgres: PostgresCluster) -> None:
    client = make_client(APP_ENV="staging", DATABASE_URL=stopped_postgres.url, wait_ready=False)

    # The app serves while the database is down and explains without leaking the URL.
    down = client.get("/readyz")
    assert down.status_code == 503
    body = down.json()
    assert body["status"] == "not ready"
    assert body["reason"] == "database unavailable (OperationalError)"
    assert stopped_postgres.password not in down.text
    assert "127.0.0.1" not in down.text
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/items").status_code == 503

    # The database comes up: the app becomes ready and the table exists, without a restart.
    stopped_postgres.resume()
    started = time.monotonic()
    ready = wait_for_status(client, "/readyz", 200, READY_WITHIN_SECONDS)
    assert ready.status_code == 200, ready.text
    assert time.monotonic() - started < READY_WITHIN_SECONDS
    created = client.post("/api/v1/items", json={"name": "after recovery"})
    assert created.status_code == 201


def test_background_task_creates_schema_without_readiness_probes(
    make_client: ClientFactory, stopped_postgres: PostgresCluster
) -> None:
    client = make_client(APP_ENV="staging", DATABASE_URL=stopped_postgres.url, wait_ready=False)
    assert client.get("/api/v1/items").status_code == 503
    stopped_postgres.resume()
    # Only the items route is polled: the reconnect loop alone must create the table.
    response = wait_for_status(client, "/api/v1/items", 200, READY_WITHIN_SECONDS)
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}


def test_database_lost_after_ready(make_client: ClientFactory, stopped_postgres: PostgresCluster) -> None:
    stopped_postgres.resume()
    client = make_client(APP_ENV="staging", DATABASE_URL=stopped_postgres.url, wait_ready=False)
    assert wait_for_status(client, "/readyz", 200, READY_WITHIN_SECONDS).status_code == 200
    stopped_postgres.stop()
    lost = client.get("/readyz")
    assert lost.status_code == 503
    assert lost.json()["status"] == "not ready"
    assert stopped_postgres.password not in lost.text
    items = client.get("/api/v1/items")
    assert items.status_code == 503
    assert items.json() == {"detail": "database unavailable"}
    stopped_postgres.resume()
    assert wait_for_status(client, "/readyz", 200, READY_WITHIN_SECONDS).status_code == 200


def test_readiness_is_bounded_when_database_does_not_answer(make_client: ClientFactory) -> None:
    # A loopback socket that listens but never speaks: the kernel completes the TCP handshake, the
    # PostgreSQL startup reply never comes, so only the connect timeout ends the wait.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = "".join(["postgresql://app:", "pw-unreachable", f"@127.0.0.1:{port}/app"])
        client = make_client(APP_ENV="staging", DATABASE_URL=url, wait_ready=False)
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < 4.0
    assert "pw-unreachable" not in response.text


def test_version(make_client: ClientFactory) -> None:
    client = make_client(APP_VERSION="1.4.2", GIT_SHA="0123abcd")
    response = client.get("/version")
    assert response.status_code == 200
    assert response.json() == {
        "version": "1.4.2",
        "gitSha": "0123abcd",
        "python": platform.python_version(),
        "release": socket.gethostname(),
    }


def test_version_release_is_the_host_name_at_request_time(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # Docker sets a container's host name to its short id; the deploy compares the two.
    monkeypatch.setattr(socket, "gethostname", lambda: "3f2a9c1d7b6e")
    assert client.get("/version").json()["release"] == "3f2a9c1d7b6e"
    monkeypatch.setattr(socket, "gethostname", lambda: "8e7d6c5b4a39")
    assert client.get("/version").json()["release"] == "8e7d6c5b4a39"


def test_version_defaults(client: TestClient) -> None:
    assert client.get("/version").json()["version"] == "0.0.0-dev"
    assert client.get("/version").json()["gitSha"] == "unknown"
