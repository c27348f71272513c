"""Prometheus metrics: what each worker process records, and what the metrics port serves.

Every worker records its requests, its database pool and its readiness in its own files in the
multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode, set up by
app/metrics_server.py before this module is first imported); the metrics port, served by the server's
parent process, reads them all and answers one set: counters and histograms summed over the
workers, gauges combined as each one's ``multiprocess_mode`` says, and no ``pid`` label anywhere.

The request path is the security layer's (app/core/middleware.py): it calls
:meth:`Metrics.request_started` and :meth:`Metrics.request_finished` on every request, so these do
as little as they can. A request's series (route template, method, status) are looked up in nested
dicts, made once per combination; the route template comes from the route the router matched
(``scope["route"]``), never from the path, so ids in paths cannot grow the label set, and a request
no route matched is counted under :data:`UNMATCHED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

if TYPE_CHECKING:
    from starlette.routing import BaseRoute
    from starlette.types import Scope

    from app.core.config import Settings
    from app.core.db import Database

#: The route label of a request that no route matched (404s, and what the security layer or the
#: HTTP protocol answers before any routing: a refused host, a body too large, a malformed request).
UNMATCHED = "<unmatched>"
#: Methods that get a label of their own; any other counts as :data:`OTHER_METHOD`, since a client may
#: send any token as a method.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"
#: Request duration buckets in seconds: from a cached answer (a millisecond) to a stuck one.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: How often a worker writes down its pool's state.
SAMPLE_SECONDS = 5.0
#: A worker checks readiness itself when no check (a /readyz request or its own) is this old: nothing
#: else asks between deploys, and the gauge must not go stale.
READINESS_REFRESH_SECONDS = 15.0

_LABELS = ("route", "method", "status")
# One series: the counter's inc and the histogram's observe, bound once.
_Series = tuple[Callable[[], None], Callable[[float], None]]


def status_class(status: int) -> str:
    """``2xx`` for 200-299 and so on; ``other`` outside 100-599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class Metrics:
    """The metrics of one worker process (one app); ``registry`` only where no parent collects them.

    In a server, the values go to the multiprocess files and ``registry`` is None; a test that
    runs the app in its own process passes a registry and reads it.
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        self.requests = Counter(
            "backend_http_requests",
            "Requests answered, by route template, method and status class",
            _LABELS,
            registry=registry,
        )
        self.duration = Histogram(
            "backend_http_request_duration_seconds",
            "Time from a request's arrival at the app to its answer, by route template, method and status class",
            _LABELS,
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "backend_http_requests_in_flight",
            "Requests being handled right now",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_connections = Gauge(
            "backend_db_pool_connections",
            "Database connections the pools hold: in_use (checked out) or idle, sampled every few seconds",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_max = Gauge(
            "backend_db_pool_max_connections",
            "The most database connections the pools may open together",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.ready = Gauge(
            "backend_ready",
            "1 when the last readiness check (the one /readyz makes) found the database ready, else 0",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.readiness_checked_at = Gauge(
            "backend_readiness_checked_timestamp_seconds",
            "When readiness was last checked (Unix time)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._routes: Sequence[BaseRoute] = ()
        self._endpoint_templates: dict[object, str] | None = None
        # route path (or endpoint, or None) -> method -> status -> series; bounded: routes and methods
        # are few, and the statuses are the app's own.
        self._series: dict[object, dict[str, dict[int, _Series]]] = {}
        self._in_use = self.pool_connections.labels("in_use")
        self._idle = self.pool_connections.labels("idle")
        #: Bound once: the security layer calls it on every request.
        self.request_started: Callable[[], None] = self.in_flight.inc
        self._in_flight_dec = self.in_flight.dec

    def use_routes(self, routes: Sequence[BaseRoute]) -> None:
        """The app's routes, where a route that does not name itself in the scope is found by its endpoint."""
        self._routes = routes
        self._endpoint_templates = None

    def request_finished(self, scope: Scope, method: str, status: int, seconds: float) -> None:
        """Count one answered request; ``scope`` is the one the router saw, ``method`` the client's."""
        self._in_flight_dec()
        route = scope.get("route")
        # The route's path is its template (routes are not hashable, their paths are); Starlette's
        # own routes (/docs) do not name themselves in the scope, only their endpoint.
        key = route.path if route is not None else scope.get("endpoint")
        if method not in METHODS:
            method = OTHER_METHOD
        try:
            inc, observe = self._series[key][method][status]
        except KeyError:
            inc, observe = self._add_series(key, method, status)
        inc()
        observe(seconds)

    def request_refused(self, method: str, status: int) -> None:
        """Count an answer the HTTP protocol gave itself, before the app (not timed: it has no duration)."""
        self.requests.labels(UNMATCHED, method if method in METHODS else OTHER_METHOD, status_class(status)).inc()

    def _add_series(self, key: object, method: str, status: int) -> _Series:
        labels = (self._template(key), method, status_class(status))
        series = (self.requests.labels(*labels).inc, self.duration.labels(*labels).observe)
        self._series.setdefault(key, {}).setdefault(method, {})[status] = series
        return series

    def _template(self, key: object) -> str:
        """The route template for a series key: a route's path, an endpoint (found among the routes), None."""
        if isinstance(key, str):
            return key
        if key is None:
            return UNMATCHED
        if self._endpoint_templates is None:
            paths = ((getattr(r, "endpoint", None), getattr(r, "path", None)) for r in self._routes)
            self._endpoint_templates = {endpoint: path for endpoint, path in paths if isinstance(path, str)}
        return self._endpoint_templates.get(key, UNMATCHED)

    def readiness_checked(self, ready: bool) -> None:
        """What a readiness check found (the database layer calls it after each check)."""
        self.ready.set(1 if ready else 0)
        self.readiness_checked_at.set(time.time())

    def sample_pool(self, database: Database) -> None:
        pool = database.engine.pool  # read each time: disposing the engine makes a new pool
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if checked_out is not None and checked_in is not None:
            self._in_use.set(checked_out())
            self._idle.set(checked_in())
        self.pool_max.set(database.pool_limit)

    async def sample_forever(self, database: Database) -> None:
        """Sample the pool every :data:`SAMPLE_SECONDS`, and check readiness when no check is recent.

        Not at start: the app is connecting then, and whoever deploys it asks /readyz at once.
        Until a check, ``backend_ready`` is 0.
        """
        started = time.monotonic()
        while True:
            if time.monotonic() - (database.last_checked or started) >= READINESS_REFRESH_SECONDS:
                await database.check()
            # After the check, which returned its connection.
            self.sample_pool(database)
            await asyncio.sleep(SAMPLE_SECONDS)


class BuildInfo:
    """What runs: ``backend_build_info`` (always 1) with version, commit and image digest; the workers."""

    def __init__(self, settings: Settings) -> None:
        info = GaugeMetricFamily(
            "backend_build_info",
            "The running build: APP_VERSION, GIT_SHA and the image digest the delivering program set (IMAGE_DIGEST)",
            labels=["version", "git_sha", "image_digest"],
        )
        info.add_metric([settings.APP_VERSION, settings.GIT_SHA, settings.IMAGE_DIGEST], 1)
        workers = GaugeMetricFamily("backend_workers", "Worker processes the server runs (WEB_CONCURRENCY)")
        workers.add_metric([], settings.WEB_CONCURRENCY)
        self._metrics = (info, workers)

    def collect(self) -> Iterable[Metric]:
        return self._metrics


class Workers:
    """Every worker's files, merged; the live gauges of workers that died are dropped first.

    uvicorn's supervisor replaces a worker that died; the dead one's counters keep counting in the
    sums (they happened), but its in-flight requests, pool and readiness are gone with it.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory
        self._merged = MultiProcessCollector(None, path=directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        for pid in _pids_with_live_files(self._directory):
            if not _alive(pid):
                mark_process_dead(pid, self._directory)  # type: ignore[no-untyped-call]
        merged: Iterable[Metric] = self._merged.collect()  # type: ignore[no-untyped-call]
        return merged


def _pids_with_live_files(directory: str) -> set[int]:
    # gauge_livesum_1234.db and the like: the pid is the last part.
    names = (os.path.basename(f)[: -len(".db")] for f in glob.glob(os.path.join(directory, "gauge_live*_*.db")))
    return {int(pid) for pid in (name.rpartition("_")[2] for name in names) if pid.isdigit()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_registry(directory: str, settings: Settings) -> CollectorRegistry:
    """What the metrics port serves: every worker's metrics in ``directory``, and the build."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Workers(directory))
    registry.register(BuildInfo(settings))
    return registry


@contextlib.asynccontextmanager
async def sampling(metrics: Metrics | None, database: Database) -> AsyncIterator[None]:
    """Run :meth:`Metrics.sample_forever` for the app's lifespan (nothing without metrics)."""
    task = None if metrics is None else asyncio.get_running_loop().create_task(metrics.sample_forever(database))
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
