"""Database engine, schema creation and readiness, tolerant of a database that is down.

The app must start and serve even when the database is unreachable (a container that crash-loops
on a slow database is worse than one that reports "not ready"). :class:`Database` therefore
creates its engine lazily-connecting, and a background task creates the schema with capped
exponential backoff until the database answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from app.models import Base

log = logging.getLogger("app.db")

#: Seconds libpq may spend establishing a connection; keeps /readyz fast when the host is gone.
CONNECT_TIMEOUT_SECONDS = 2
#: Upper bound for one readiness probe, connection included.
READINESS_TIMEOUT_SECONDS = 3.0
#: A worker's pool, per database: (connections kept open, more opened under load). SQLite's are
#: SQLAlchemy's defaults, spelled out so that the metrics can say the limit.
POOL_SIZES = {"postgresql": (5, 5), "sqlite": (5, 10)}


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff between reconnection attempts, in seconds."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0


def _pool_size(url: URL) -> tuple[int, int]:
    return POOL_SIZES["sqlite" if url.drivername == "sqlite" else "postgresql"]


def make_engine(url: URL) -> Engine:
    pool_size, max_overflow = _pool_size(url)
    if url.drivername == "sqlite":
        # One connection per thread is SQLite's default; FastAPI runs sync routes in a pool.
        return create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 5},
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=5,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "backend"},
    )


class Database:
    """Owns the engine, knows whether the schema exists, and checks readiness.

    ``on_checked`` is told what each readiness check found (True: ready); the metrics record it.
    """

    def __init__(
        self, url: URL, *, backoff: Backoff | None = None, on_checked: Callable[[bool], None] | None = None
    ) -> None:
        self.engine = make_engine(url)
        #: The most connections the pool may hold at once.
        self.pool_limit = sum(_pool_size(url))
        #: When readiness was last checked (``time.monotonic()``), None before the first check.
        self.last_checked: float | None = None
        self._on_checked = on_checked
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.backoff = backoff or Backoff()
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def schema_ready(self) -> bool:
        return self._schema_ready

    def session(self) -> Session:
        return self.sessions()

    def ensure_schema(self) -> None:
        """Create missing tables; raises when the database cannot be reached."""
        with self._schema_lock:
            if self._schema_ready:
                return
            Base.metadata.create_all(self.engine, checkfirst=True)
            self._schema_ready = True
            log.info("database schema ready")

    def _ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    async def check(self) -> str | None:
        """None when ready, else a short reason that never contains the URL or credentials."""
        reason = await self._check()
        self.last_checked = time.monotonic()
        if self._on_checked is not None:
            self._on_checked(reason is None)
        return reason

    async def _check(self) -> str | None:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._probe), READINESS_TIMEOUT_SECONDS)
        except TimeoutError:
            return "database check timed out"
        except Exception as exc:
            log.warning("readiness check failed: %s: %s", type(exc).__name__, exc)
            return f"database unavailable ({type(exc).__name__})"
        return None

    def _probe(self) -> None:
        if not self._schema_ready:
            self.ensure_schema()
        self._ping()

    async def _connect_loop(self) -> None:
        delay = self.backoff.initial
        attempt = 0
        while not self._schema_ready:
            attempt += 1
            try:
                await asyncio.to_thread(self.ensure_schema)
            except Exception as exc:
                log.warning(
                    "database not reachable (attempt %d, retrying in %.1fs): %s: %s",
                    attempt,
                    delay,
                    type(exc).__name__,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * self.backoff.factor, self.backoff.maximum)

    def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._connect_loop(), name="db-connect")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await asyncio.to_thread(self.engine.dispose)
