"""JSON-lines logging on stdout with redaction of secret values.

Each record becomes one JSON object per line. A :class:`RedactingFilter` masks the SECRET_KEY and
the database password (and the whole DATABASE_URL) wherever they might end up in a message or a
traceback, so an accidental ``log.info(settings.DATABASE_URL...)`` cannot leak them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable
from typing import TextIO
from urllib.parse import quote, unquote

from app.core.config import Settings

REDACTED = "***"
# Shorter values would mask ordinary words in every log line.
_MIN_REDACTED_LENGTH = 4
# Extra attributes a record may carry that end up as top-level JSON fields.
_EXTRA_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "client", "event")


class Redactor:
    """Replaces every known secret value in a string with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = {s for s in secrets if len(s) >= _MIN_REDACTED_LENGTH}
        # Longest first, so a secret that contains another one is masked whole.
        self._secrets = sorted(unique, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> Redactor:
        values = [settings.SECRET_KEY.get_secret_value(), settings.DATABASE_URL.get_secret_value()]
        password = settings.database_url.password
        if password:
            # The same password can appear raw, URL-encoded or decoded depending on who prints it.
            values += [password, quote(password, safe=""), unquote(password)]
        return cls(values)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


class RedactingFilter(logging.Filter):
    """Masks secrets in the rendered message and in the formatted exception of a record."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        # The traceback now lives, redacted, in exc_text; drop exc_info so nothing re-renders it.
        record.exc_info = None
        return True


_ts_cache: tuple[int, str] = (-1, "")


def _timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second."""
    global _ts_cache  # noqa: PLW0603  # a one-entry cache, racing writers store the same value
    second = int(created)
    if _ts_cache[0] != second:
        _ts_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_ts_cache[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and known extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in _EXTRA_FIELDS:
            value = record.__dict__.get(field)
            if value is not None:
                entry[field] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes JSON lines to whatever ``sys.stdout`` is at write time (pytest may replace it).

    Lines are written in batches: one ``write`` per request would mean one system call, and one
    wake-up of the container engine's log pipe, per request, which costs more than the rest of the
    middleware together under load. Only access lines wait, at most :attr:`FLUSH_INTERVAL_SECONDS`
    (or until :attr:`MAX_PENDING_LINES` are waiting). Any other record is rare and flushes at once,
    with every line before it, so the order on stdout is the order of the records; the app's own
    "stopped" record at the end of the lifespan thus writes out the last access lines even in a
    worker process that exits without running ``atexit`` handlers.
    """

    FLUSH_INTERVAL_SECONDS = 0.05
    MAX_PENDING_LINES = 256

    def __init__(self) -> None:
        super().__init__(sys.stdout)
        self._pending: list[str] = []
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # logging must never take the app down
            self.handleError(record)
            return
        self.write_line(line, urgent=True)

    def write_line(self, line: str, *, urgent: bool = False) -> None:
        """Queue one finished line; records from any thread interleave whole."""
        with self.lock or contextlib.nullcontext():
            self._pending.append(line)
            waiting = len(self._pending)
            if urgent or waiting >= self.MAX_PENDING_LINES:
                self._drain()
                return
        # Only the first line of a batch wakes the flusher: the others ride along for free.
        if waiting == 1:
            self._start_flusher()
            self._wake.set()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            self._drain()

    def _drain(self) -> None:
        # Called with the lock held.
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        stream = self.stream
        stream.write(text)
        stream.flush()

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        with self.lock or contextlib.nullcontext():
            # A forked worker inherits the object but not the thread: start one per process.
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_loop, name="log-flusher", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            # Let the lines of a burst gather into one write.
            time.sleep(self.FLUSH_INTERVAL_SECONDS)
            self._wake.clear()
            self.flush()


_HANDLER_NAME = "app-json-stdout"
# json's own string escaper (C-accelerated); the same output as json.dumps(..., ensure_ascii=False).
_quote = json.encoder.encode_basestring
_access_logger = logging.getLogger("app.access")


class _AccessWriter:
    """The handler and redactor the access log writes through; set by :func:`configure_logging`."""

    handler: StdoutHandler | None = None
    redactor: Redactor = Redactor(())


def log_access(*, request_id: str, method: str, path: str, status: int, duration_ms: float, client: str | None) -> None:
    """One access line per request, shaped like every other record of the ``app.access`` logger.

    The line goes straight to the JSON handler, through the same redaction: building a full
    ``LogRecord`` (caller lookup, thread and process info) per request costs more than the rest of
    the security middleware together. The fields are fixed, so the line is assembled directly;
    ``request_id`` is safe by construction (validated or generated), strings from the client are
    JSON-escaped.
    """
    handler = _AccessWriter.handler
    if handler is None or not _access_logger.isEnabledFor(logging.INFO):
        return
    line = (
        f'{{"ts": "{_timestamp(time.time())}", "level": "INFO", "logger": "app.access", "msg": "request", '
        f'"request_id": "{request_id}", "method": {_quote(method)}, "path": {_quote(path)}, '
        f'"status": {int(status)}, "duration_ms": {float(duration_ms)}'
    )
    if client is not None:
        line += f', "client": {_quote(client)}'
    handler.write_line(_AccessWriter.redactor(line + "}"))


def flush_logs() -> None:
    """Write out every line still waiting in the JSON handler (see :class:`StdoutHandler`)."""
    handler = _AccessWriter.handler
    if handler is not None:
        handler.flush()


def configure_logging(settings: Settings) -> None:
    """Route the root, uvicorn and app loggers to one JSON stdout handler with redaction.

    Idempotent: calling it again (another app instance, a worker process) replaces the handler.
    """
    handler = StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    redactor = Redactor.from_settings(settings)
    handler.addFilter(RedactingFilter(redactor))
    _AccessWriter.handler = handler
    _AccessWriter.redactor = redactor

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(existing)
    # First in line: the filter rewrites the record in place, so handlers added by others later
    # (log shippers, test capture) only ever see the redacted text.
    root.handlers.insert(0, handler)
    root.setLevel(settings.LOG_LEVEL)

    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(settings.LOG_LEVEL)
    # The app writes its own access line (with request id and duration); uvicorn's would double it.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True
