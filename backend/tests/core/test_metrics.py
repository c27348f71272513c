"""Request, pool and readiness metrics, recorded by the app in this process (a registry of the test's own).

The server's metrics port, its worker processes and what it serves are tested against the real
server in tests/test_metrics_server.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from starlette.types import Message, Receive, Scope, Send

from app.core import metrics as metrics_module
from app.core.metrics import DURATION_BUCKETS, FLUSH_SECONDS, UNMATCHED, Metrics, status_class
from app.core.middleware import SecurityMiddleware
from app.main import create_app
from tests.conftest import FAST_BACKOFF, TEST_SECRET_KEY, ClientFactory, SettingsFactory
from tests.support.metrics import Scrape

REQUESTS = "backend_http_requests_total"
COUNT = "backend_http_request_duration_seconds_count"


def scrape(registry: CollectorRegistry) -> Scrape:
    return Scrape(generate_latest(registry).decode())


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def handed_over(metrics: Metrics, route: str) -> tuple[float, float]:
    """What prometheus_client holds (read without a flush): ``route``'s GET 2xx count, and in flight."""
    count = next(
        (
            s.value
            for family in metrics.requests.collect()
            for s in family.samples
            if s.name == REQUESTS and s.labels == {"route": route, "method": "GET", "status": "2xx"}
        ),
        0.0,
    )
    in_flight = next(s.value for family in metrics.in_flight.collect() for s in family.samples)
    return count, in_flight


@pytest.fixture
def unregistered_app(make_settings: SettingsFactory) -> Iterator[tuple[TestClient, Metrics]]:
    """The app with metrics of its own that no registry reads (so nothing flushes them but the app)."""
    app = create_app(make_settings(), backoff=FAST_BACKOFF)
    with TestClient(app, base_url="http://localhost") as client:
        yield client, app.state.metrics


def test_requests_are_counted_and_timed_by_route_template_method_and_status_class(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    client = make_client(registry=registry)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.head("/healthz").status_code == 200
    created = client.post("/api/v1/items", json={"name": "counted"})
    assert created.status_code == 201
    assert client.get(f"/api/v1/items/{created.json()['id']}").status_code == 200
    for missing in (900001, 900002):
        assert client.get(f"/api/v1/items/{missing}").status_code == 404
    assert client.delete("/api/v1/items/0").status_code == 422
    assert client.put("/api/v1/items").status_code == 405
    assert client.get("/no/such/route").status_code == 404
    assert client.get("/docs").status_code == 200

    seen = scrape(registry)
    expected = {
        ("/healthz", "GET", "2xx"): 3,
        ("/healthz", "HEAD", "2xx"): 1,
        ("/api/v1/items", "POST", "2xx"): 1,
        ("/api/v1/items/{item_id}", "GET", "2xx"): 1,
        ("/api/v1/items/{item_id}", "GET", "4xx"): 2,
        ("/api/v1/items/{item_id}", "DELETE", "4xx"): 1,
        # The route matched by path, not by method: its template, with the 405.
        ("/api/v1/items", "PUT", "4xx"): 1,
        (UNMATCHED, "GET", "4xx"): 1,
        # Starlette's own route, found by its endpoint.
        ("/docs", "GET", "2xx"): 1,
    }
    counted = {(ls["route"], ls["method"], ls["status"]): v for n, ls, v in seen.samples() if n == REQUESTS}
    assert counted == expected
    timed = {(ls["route"], ls["method"], ls["status"]): v for n, ls, v in seen.samples() if n == COUNT}
    assert timed == expected
    buckets = [
        ls["le"] for ls in seen.series("backend_http_request_duration_seconds_bucket") if ls["route"] == "/healthz"
    ]
    assert buckets[: len(DURATION_BUCKETS) + 1] == [*(str(b) for b in DURATION_BUCKETS), "+Inf"]
    assert seen.value("backend_http_requests_in_flight") == 0


def test_many_distinct_ids_paths_and_methods_keep_the_label_set_bounded(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    client = make_client(registry=registry)
    for i in range(1, 201):
        client.get(f"/api/v1/items/{700000 + i}")
        client.get(f"/unknown/{i}", params={"q": f"canary-query-{i}"})
        client.request(f"M{i:03d}", "/healthz")
    seen = scrape(registry)
    series = seen.series(REQUESTS)
    assert sorted((s["route"], s["method"], s["status"]) for s in series) == [
        ("/api/v1/items/{item_id}", "GET", "4xx"),
        ("/healthz", "other", "4xx"),
        (UNMATCHED, "GET", "4xx"),
    ]
    assert seen.value(REQUESTS, route=UNMATCHED) == 200
    assert seen.value(REQUESTS, route="/healthz", method="other") == 200
    for fragment in ("700001", "/unknown/", "canary-query", "M001"):
        assert fragment not in seen.text


def test_an_unhandled_error_counts_as_5xx_of_its_route(
    make_settings: SettingsFactory, registry: CollectorRegistry
) -> None:
    app = create_app(make_settings(APP_ENV="staging"), backoff=FAST_BACKOFF, registry=registry)

    async def boom() -> None:
        raise RuntimeError("kaboom")

    app.add_api_route("/boom/{part}", boom)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        assert client.get("/boom/1").status_code == 500
    seen = scrape(registry)
    assert seen.value(REQUESTS, route="/boom/{part}", method="GET", status="5xx") == 1
    assert seen.value("backend_http_requests_in_flight") == 0


def test_what_the_security_layer_refuses_counts_as_unmatched(
    make_client: ClientFactory, registry: CollectorRegistry
) -> None:
    client = make_client(registry=registry, MAX_BODY_BYTES="10")
    assert client.get("/healthz", headers={"host": "evil.example"}).status_code == 400
    assert (
        client.post("/api/v1/items", content=b"x" * 50, headers={"content-type": "application/json"}).status_code == 413
    )
    seen = scrape(registry)
    assert seen.value(REQUESTS, route=UNMATCHED, method="GET", status="4xx") == 1
    assert seen.value(REQUESTS, route=UNMATCHED, method="POST", status="4xx") == 1


def test_in_flight_counts_a_request_while_it_runs(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry=registry)
    release = asyncio.Event()

    async def slow(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    layer = SecurityMiddleware(slow, allowed_hosts=["*"], max_body_bytes=10, hsts=False, metrics=metrics)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: Message) -> None:
        pass

    async def run() -> tuple[float | None, float | None]:
        scope: Scope = {"type": "http", "method": "GET", "path": "/slow", "headers": [(b"host", b"x")], "state": {}}
        task = asyncio.create_task(layer(scope, receive, send))
        await asyncio.sleep(0.05)
        during = scrape(registry).value("backend_http_requests_in_flight")
        release.set()
        await task
        return during, scrape(registry).value("backend_http_requests_in_flight")

    assert asyncio.run(run()) == (1, 0)
    assert scrape(registry).value(REQUESTS, route=UNMATCHED, status="2xx") == 1


def test_a_request_is_handed_to_prometheus_client_at_the_next_flush_not_at_once(
    unregistered_app: tuple[TestClient, Metrics],
) -> None:
    client, metrics = unregistered_app
    assert client.get("/healthz").status_code == 200
    answered = time.monotonic()
    # Noted, not yet handed over: that is what keeps prometheus_client's calls off the request path.
    assert handed_over(metrics, "/healthz") == (0, 0)
    while handed_over(metrics, "/healthz")[0] != 1:
        # A second, and as much again for a loaded machine.
        assert time.monotonic() - answered < 2 * FLUSH_SECONDS, "the request was not flushed within a second"
        time.sleep(0.02)
    assert handed_over(metrics, "/healthz") == (1, 0)


def test_the_app_flushes_at_shutdown_what_it_noted_since_the_last_flush(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No timed flush in this test: only the one at the lifespan's end can hand the requests over.
    monkeypatch.setattr(metrics_module, "FLUSH_SECONDS", 3600.0)
    app = create_app(make_settings(), backoff=FAST_BACKOFF)
    metrics: Metrics = app.state.metrics
    with TestClient(app, base_url="http://localhost") as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
        assert handed_over(metrics, "/healthz") == (0, 0)
    assert handed_over(metrics, "/healthz") == (3, 0)
    count = next(s.value for f in metrics.duration.collect() for s in f.samples if s.name.endswith("_count"))
    assert count == 3


# On and around the bucket bounds, below the first and above the last.
EDGE_DURATIONS = [0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.003, 0.05, 0.7, 1.0, 9.99, 10.0, 10.5, 0.001, 0.2]


def test_a_flush_adds_what_observe_would_have_added_value_by_value(registry: CollectorRegistry) -> None:
    metrics = Metrics(registry=registry)
    for seconds in EDGE_DURATIONS:
        metrics.request_started()
        metrics.request_finished({"route": None}, "GET", 200, seconds)
    reference_registry = CollectorRegistry()
    reference = Histogram(
        "backend_http_request_duration_seconds",
        "reference",
        ["route", "method", "status"],
        buckets=DURATION_BUCKETS,
        registry=reference_registry,
    )
    for seconds in EDGE_DURATIONS:
        reference.labels(UNMATCHED, "GET", "2xx").observe(seconds)

    def histogram(seen: Scrape) -> dict[tuple[str, str], float]:
        return {
            (name, labels.get("le", "")): value
            for name, labels, value in seen.samples()
            if name.startswith("backend_http_request_duration_seconds") and not name.endswith("_created")
        }

    ours, theirs = histogram(scrape(registry)), histogram(scrape(reference_registry))
    total = ("backend_http_request_duration_seconds_sum", "")
    assert ours.pop(total) == pytest.approx(theirs.pop(total), rel=1e-12)
    assert ours == theirs
    assert ours[("backend_http_request_duration_seconds_bucket", "0.001")] == 4


def test_without_prometheus_clients_inner_values_a_flush_observes_value_by_value() -> None:
    observed: list[float] = []

    class OnlyObserve:
        def observe(self, amount: float) -> None:
            observed.append(amount)

    timed = metrics_module._Timed(OnlyObserve())  # type: ignore[arg-type]
    timed.observe_all(EDGE_DURATIONS)
    assert observed == EDGE_DURATIONS


def test_a_failed_flush_is_logged_not_raised_and_the_next_one_hands_the_requests_over(
    registry: CollectorRegistry, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = Metrics(registry=registry)
    metrics.request_started()
    metrics.request_finished({"route": None}, "GET", 200, 0.001)

    def full(_value: float) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(metrics.in_flight, "set", full)
        with caplog.at_level(logging.ERROR, logger="app.metrics"):
            metrics.flush_or_log()
    assert [r.getMessage() for r in caplog.records] == ["metrics flush failed"]
    metrics.request_started()
    metrics.request_finished({"route": None}, "GET", 200, 0.001)
    assert scrape(registry).value(REQUESTS, route=UNMATCHED) == 2


def test_readiness_is_what_the_last_check_found(make_client: ClientFactory, registry: CollectorRegistry) -> None:
    broken = make_client(registry=registry, DATABASE_URL="sqlite:////nonexistent-dir/sub/app.db", wait_ready=False)
    assert scrape(registry).value("backend_ready") == 0  # not checked yet
    before = time.time()
    assert broken.get("/readyz").status_code == 503
    seen = scrape(registry)
    assert seen.value("backend_ready") == 0
    assert (seen.value("backend_readiness_checked_timestamp_seconds") or 0) >= before

    other = CollectorRegistry()
    ready = make_client(registry=other)
    assert ready.get("/readyz").status_code == 200
    assert scrape(other).value("backend_ready") == 1


def test_readiness_is_checked_by_the_worker_itself_when_nobody_asks(
    make_client: ClientFactory, registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "SAMPLE_SECONDS", 0.05)
    monkeypatch.setattr(metrics_module, "READINESS_REFRESH_SECONDS", 0.2)
    make_client(registry=registry)
    deadline = time.monotonic() + 5
    while scrape(registry).value("backend_ready") != 1:
        assert time.monotonic() < deadline, "the worker never checked readiness itself"
        time.sleep(0.05)
    first = scrape(registry).value("backend_readiness_checked_timestamp_seconds") or 0
    time.sleep(0.5)
    assert (scrape(registry).value("backend_readiness_checked_timestamp_seconds") or 0) > first


def test_the_pool_is_sampled(make_client: ClientFactory, registry: CollectorRegistry) -> None:
    client = make_client(registry=registry)
    assert client.post("/api/v1/items", json={"name": "pooled"}).status_code == 201
    app = client.app
    assert isinstance(app, FastAPI)
    database = app.state.database
    metrics: Metrics = app.state.metrics
    metrics.sample_pool(database)
    seen = scrape(registry)
    assert seen.value("backend_db_pool_max_connections") == 15  # SQLite: 5 kept, 10 more under load
    assert seen.value("backend_db_pool_connections", state="in_use") == 0
    assert (seen.value("backend_db_pool_connections", state="idle") or 0) >= 1
    with database.engine.connect():
        metrics.sample_pool(database)
        assert scrape(registry).value("backend_db_pool_connections", state="in_use") == 1


def test_no_secret_and_no_client_text_in_any_metric(make_client: ClientFactory, registry: CollectorRegistry) -> None:
    client = make_client(registry=registry)
    client.get(f"/{TEST_SECRET_KEY}", params={"key": TEST_SECRET_KEY}, headers={"X-Request-ID": "canary-rid-1"})
    client.post("/api/v1/items", json={"name": "canary-item-name"}, headers={"Authorization": "Bearer canary-token"})
    client.get("/readyz")
    text = scrape(registry).text
    for fragment in (TEST_SECRET_KEY, TEST_SECRET_KEY[:12], "canary-rid", "canary-item", "canary-token"):
        assert fragment not in text


def test_without_metrics_nothing_is_recorded(make_settings: SettingsFactory, registry: CollectorRegistry) -> None:
    for options in ({"metrics": False}, {"middleware": False}):
        app = create_app(make_settings(), backoff=FAST_BACKOFF, registry=registry, **options)
        with TestClient(app, base_url="http://localhost") as client:
            assert client.get("/healthz").status_code == 200
        assert app.state.metrics is None
    assert scrape(registry).samples() == []


@pytest.mark.parametrize(
    ("status", "label"),
    [(100, "1xx"), (200, "2xx"), (308, "3xx"), (499, "4xx"), (599, "5xx"), (99, "other"), (600, "other")],
)
def test_status_class(status: int, label: str) -> None:
    assert status_class(status) == label
