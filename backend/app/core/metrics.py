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

A request is only noted there, in plain Python: its duration appended to its series' list, the
in-flight count moved by one. prometheus_client's own calls take a lock and write to the mmap file
for each value (the counter, the histogram's sum and bucket, the in-flight gauge twice): about 6 µs a
request on this project's test machine, and more amid a request's own work, which evicts their code
and data from the CPU's caches; the list append costs about 0.1 µs. :meth:`Metrics.flush` hands the
notes to prometheus_client once every :data:`FLUSH_SECONDS`, at the app's shutdown (after uvicorn
has drained the last request), and before a registry of a test's own is read.

What a scrape sees, therefore:

- a request up to :data:`FLUSH_SECONDS` (plus a scrape's own time) after it was answered;
- ``backend_http_requests_in_flight``: the requests under way in each worker at its last flush
  (summed over the live workers), not at the scrape;
- the requests of a worker that is killed (SIGKILL, OOM) within the second before; a worker that
  stops on SIGTERM flushes first and loses nothing.

Threads: uvicorn runs the app, the security layer included, as tasks on each worker's event loop;
only sync route handlers and the database's blocking calls go to threads, and none of them calls in
here (the readiness check reports from its coroutine, after its thread returned). The HTTP
protocol's own answers (:meth:`Metrics.request_refused`) come from its callbacks, on the same loop,
and so do the flush task and the last flush. So the notes need no lock. Only a test reads from
another thread (Starlette's TestClient runs the app's loop in a thread of its own, and a read of
its registry flushes in the test's), after its requests were answered; even then
:meth:`Metrics.flush` takes a series' notes with a slice and a ``del`` of the same list, each atomic,
so that a note appended meanwhile waits for the next flush instead of being lost.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import glob
import logging
import math
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
#: How often a worker hands its requests to prometheus_client (what a scrape can see).
FLUSH_SECONDS = 1.0
#: How often a worker writes down its pool's state.
SAMPLE_SECONDS = 5.0
#: A worker checks readiness itself when no check (a /readyz request or its own) is this old: nothing
#: else asks between deploys, and the gauge must not go stale.
READINESS_REFRESH_SECONDS = 15.0

_LABELS = ("route", "method", "status")

log = logging.getLogger("app.metrics")


class _Series:
    """One label set's requests since the last flush, and where they go then."""

    __slots__ = ("count", "durations", "timed")

    def __init__(self, count: Callable[[float], None], timed: _Timed | None) -> None:
        self.count = count
        self.timed = timed
        #: The durations (seconds) of the requests answered since the last flush; for an answer
        #: the HTTP protocol gave itself, which has none, 0.0 placeholders (never observed).
        self.durations: list[float] = []


class _Timed:
    """A histogram series that takes a flush's durations at once: each bucket and the sum written once.

    ``Histogram.observe`` writes the sum and one bucket for every value, each a lock and an mmap
    write in multiprocess mode (about 2.5 µs a request). prometheus_client has no call for many values,
    so this adds to the child's own values (``_sum``, ``_buckets``: prometheus_client 0.2x, pinned in
    uv.lock), exactly what ``observe`` would add (tests/core/test_metrics.py compares the two); where a
    version has them no more, it falls back to ``observe``.
    """

    __slots__ = ("_bounds", "_buckets", "_observe", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._observe = child.observe
        bounds = getattr(child, "_upper_bounds", None)
        buckets = getattr(child, "_buckets", None)
        total = getattr(child, "_sum", None)
        if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
            self._bounds: list[float] | None = None
            return
        self._bounds = list(bounds)
        self._buckets: list[Callable[[float], None]] = [bucket.inc for bucket in buckets]
        self._sum: Callable[[float], None] = total.inc

    def observe_all(self, durations: list[float]) -> None:
        if self._bounds is None:
            for seconds in durations:
                self._observe(seconds)
            return
        counts = [0] * len(self._bounds)
        bounds = self._bounds
        for seconds in durations:
            # The first bucket whose bound is >= seconds, as observe picks it (the last bound is +Inf).
            counts[bisect.bisect_left(bounds, seconds)] += 1
        self._sum(math.fsum(durations))
        for inc, count in zip(self._buckets, counts, strict=True):
            if count:
                inc(count)


def status_class(status: int) -> str:
    """``2xx`` for 200-299 and so on; ``other`` outside 100-599."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


class Metrics:
    """The metrics of one worker process (one app); ``registry`` only where no parent collects them.

    In a server, the values go to the multiprocess files and ``registry`` is None; a test that
    runs the app in its own process passes a registry and reads it (a read flushes first).
    """

    def __init__(self, *, registry: CollectorRegistry | None = None) -> None:
        if registry is not None:
            # First in the registry, so that reading it sees every request noted so far.
            registry.register(_FlushedOnRead(self))
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
            "Requests being handled, as of the last flush (at most a second ago)",
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
        self._refusals: dict[tuple[str, int], _Series] = {}
        self._all: list[_Series] = []
        self._in_use = self.pool_connections.labels("in_use")
        self._idle = self.pool_connections.labels("idle")
        #: Requests under way in this worker (the gauge gets it at each flush).
        self.in_flight_now = 0

    def use_routes(self, routes: Sequence[BaseRoute]) -> None:
        """The app's routes, where a route that does not name itself in the scope is found by its endpoint."""
        self._routes = routes
        self._endpoint_templates = None

    def request_started(self) -> None:
        """A request has arrived."""
        self.in_flight_now += 1

    def request_finished(self, scope: Scope, method: str, status: int, seconds: float) -> None:
        """Note one answered request; ``scope`` is the one the router saw, ``method`` the client's."""
        self.in_flight_now -= 1
        route = scope.get("route")
        # The route's path is its template (routes are not hashable, their paths are); Starlette's
        # own routes (/docs) do not name themselves in the scope, only their endpoint.
        key = route.path if route is not None else scope.get("endpoint")
        if method not in METHODS:
            method = OTHER_METHOD
        try:
            series = self._series[key][method][status]
        except KeyError:
            series = self._add_series(key, method, status)
        series.durations.append(seconds)

    def request_refused(self, method: str, status: int) -> None:
        """Note an answer the HTTP protocol gave itself, before the app: counted, not timed (it has no duration)."""
        method = method if method in METHODS else OTHER_METHOD
        series = self._refusals.get((method, status))
        if series is None:
            series = _Series(self.requests.labels(UNMATCHED, method, status_class(status)).inc, None)
            self._refusals[(method, status)] = series
            self._all.append(series)
        series.durations.append(0.0)

    def _add_series(self, key: object, method: str, status: int) -> _Series:
        labels = (self._template(key), method, status_class(status))
        series = _Series(self.requests.labels(*labels).inc, _Timed(self.duration.labels(*labels)))
        self._series.setdefault(key, {}).setdefault(method, {})[status] = series
        self._all.append(series)
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

    def flush(self) -> None:
        """Hand every request noted since the last flush to prometheus_client, and the in-flight count."""
        for series in self._all:
            durations = series.durations
            taken = len(durations)
            if not taken:
                continue
            # The first ``taken`` of the same list: a request noted meanwhile (a test's read, from
            # another thread) stays for the next flush.
            batch = durations[:taken]
            del durations[:taken]
            series.count(taken)
            if series.timed is not None:
                series.timed.observe_all(batch)
        self.in_flight.set(self.in_flight_now)

    async def flush_forever(self) -> None:
        """:meth:`flush` every :data:`FLUSH_SECONDS`; a flush that fails is logged, and the next one tries again."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush_or_log()

    def flush_or_log(self) -> None:
        """:meth:`flush`; a failure (a multiprocess file that cannot grow: /tmp full) is logged, not raised.

        The requests of that flush are lost to the metrics; a flush is never the reason a request
        or the shutdown fails.
        """
        try:
            self.flush()
        except Exception:
            log.exception("metrics flush failed")

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


class _FlushedOnRead:
    """A collector of nothing that flushes ``metrics`` when a registry of the caller's own is read."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        self._metrics.flush()
        return ()


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
    """Flush and sample for the app's lifespan, and flush once more at its end (nothing without metrics).

    uvicorn runs the lifespan's end after its last connection closed (or after
    SHUTDOWN_TIMEOUT_SECONDS, once it cancelled the requests left), so the last flush has every request.
    """
    if metrics is None:
        yield
        return
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(metrics.flush_forever()), loop.create_task(metrics.sample_forever(database))]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        metrics.flush_or_log()
