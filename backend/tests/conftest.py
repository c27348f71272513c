"""Shared fixtures: a clean environment, settings factories, real databases, test clients."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import create_engine, text

from app.core.config import EXPECTATIONS, Settings, get_settings, load_settings, misspelled_settings
from app.core.db import Backoff
from app.main import create_app
from tests.support.postgres import PostgresCluster
from tests.support.server import Server

#: A valid key for tests; random per run so no fixed value can leak into a passing assertion.
TEST_SECRET_KEY = secrets.token_urlsafe(40)
#: Fast reconnection for tests that watch the database come back.
FAST_BACKOFF = Backoff(initial=0.1, maximum=0.5)
#: With FAST_BACKOFF, how long a reachable database may take to be seen as ready.
READY_WITHIN_SECONDS = 10.0

SettingsFactory = Callable[..., Settings]
ClientFactory = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine running the tests."""
    # The test client's own request log would print test URLs (query canaries included); it is not the app's.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    for name in EXPECTATIONS:
        monkeypatch.delenv(name, raising=False)
    # Nor a name the backend would take for a misspelled setting (refused in production).
    for name, _ in misspelled_settings():
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'app.db'}"


@pytest.fixture
def make_settings(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> SettingsFactory:
    """Settings read from the environment like production does; keyword args set variables."""

    def factory(**env: str) -> Settings:
        values = {"APP_ENV": "development", "DATABASE_URL": sqlite_url, "SECRET_KEY": TEST_SECRET_KEY, **env}
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return factory


@pytest.fixture
def make_client(make_settings: SettingsFactory) -> Iterator[ClientFactory]:
    """Builds the app from env settings and enters its lifespan; every client is closed at the end."""
    opened: list[TestClient] = []

    def factory(
        *,
        raise_server_exceptions: bool = True,
        wait_ready: bool = True,
        registry: CollectorRegistry | None = None,
        **env: str,
    ) -> TestClient:
        app = create_app(make_settings(**env), backoff=FAST_BACKOFF, registry=registry)
        client = TestClient(app, base_url="http://localhost", raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        opened.append(client)
        if wait_ready:
            # The schema is created in the background; tests of other behaviour wait for it.
            deadline = time.monotonic() + READY_WITHIN_SECONDS
            while not app.state.database.schema_ready:
                assert time.monotonic() < deadline, "the database never became ready"
                time.sleep(0.02)
        return client

    yield factory
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    """A minimal valid environment for a real server process (SQLite in the test's directory)."""
    return {"APP_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "SECRET_KEY": TEST_SECRET_KEY}


@pytest.fixture
def make_server() -> Iterator[type[Server]]:
    """Starts real server processes; every one still running is killed at the end of the test."""
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, env: dict[str, str], *args: str) -> None:
            super().__init__(env, *args)
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One running PostgreSQL cluster for the whole session."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


def _drop_items(url: str) -> None:
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS items"))
    engine.dispose()


@pytest.fixture
def postgres_url(postgres: PostgresCluster) -> Iterator[str]:
    """The session cluster's URL, with the items table dropped afterwards for isolation."""
    yield postgres.url
    _drop_items(postgres.url)


@pytest.fixture(scope="session")
def spare_postgres() -> Iterator[PostgresCluster]:
    """A second cluster that tests may stop and start; stopped between tests."""
    cluster = PostgresCluster()
    try:
        cluster.start()
        cluster.stop()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def stopped_postgres(spare_postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """The spare cluster, down at the start of the test; left clean (no table) and down after it."""
    assert not spare_postgres.is_running()
    yield spare_postgres
    if not spare_postgres.is_running():
        spare_postgres.resume()
    _drop_items(spare_postgres.url)
    spare_postgres.stop()
