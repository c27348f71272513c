"""JSON-lines logging on stdout with redaction of secret values.

Each record becomes one JSON object per line. A :class:`RedactingFilter` masks the SECRET_KEY, the
database password and user name (and the whole DATABASE_URL) wherever they might end up in a
message or a traceback, so neither an accidental ``log.info(settings.DATABASE_URL...)`` nor a
connection error that quotes the user can leak them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
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
    def from_settings(cls, settings: Settings, *, user: bool = False) -> Redactor:
        """Masks SECRET_KEY, DATABASE_URL and its password; with ``user``, the database user name too.

        Access lines are masked without the user name: they hold only what the client sent (a
        method, a path), and a short user name such as ``items`` would mask paths. Every other
        record is masked with it, as a database's connection errors quote it (``for user "app"``).
        """
        url = settings.database_url
        values = [settings.SECRET_KEY.get_secret_value(), settings.DATABASE_URL.get_secret_value()]
        for part in (url.password, url.username if user else None):
            if part:
                # The same value can appear raw, URL-encoded, decoded or quoted depending on who prints it.
                values += [part, quote(part, safe=""), unquote(part), f'"{part}"']
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
_MILLIS = tuple(f"{n:03d}" for n in range(1000))


def _timestamp(created: float) -> str:
    """ISO-8601 UTC with milliseconds; the seconds part is formatted once per second."""
    global _ts_cache  # noqa: PLW0603  # a one-entry cache, racing writers store the same value
    second, millis = divmod(int(created * 1000), 1000)
    if _ts_cache[0] != second:
        _ts_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_ts_cache[1]}.{_MILLIS[millis]}Z"


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


# One request as the access log keeps it until its batch is written: (wall-clock time, request
# id, method, path, status, duration in seconds, client address or None).
AccessEntry = tuple[float, str, str, str, int, float, str | None]


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes JSON lines to whatever ``sys.stdout`` is at write time (pytest may replace it).

    Access lines are written in batches: one ``write`` per request would mean one system call,
    and one wake-up of the container engine's log pipe, per request, which costs more than the
    rest of the middleware together under load. An access entry is queued unformatted, without a
    lock (:meth:`write_access` is on every request's path); a flusher thread writes the queue out
    every :attr:`FLUSH_INTERVAL_SECONDS` while entries keep coming, formatting and redacting the
    batch in one go, and sleeps while none do. Any other record is rare and flushes at once, with
    every line before it, so the order on stdout is the order of the records; the app's own
    "stopped" record at the end of the lifespan thus writes out the last access lines even in a
    worker process that exits without running ``atexit`` handlers.
    """

    FLUSH_INTERVAL_SECONDS = 0.05

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__(sys.stdout)
        #: Masks secrets in access lines; other records are redacted by :class:`RedactingFilter`.
        self.redactor = redactor or Redactor(())
        self._reset_flusher()
        _live_handlers.add(self)

    def _reset_flusher(self) -> None:
        # deque.append and popleft are atomic: writers need no lock, drains hold self.lock.
        self._pending: deque[str | AccessEntry] = deque()
        self._wake = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_idle = True

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
        self._pending.append(line)
        self.flush()

    def write_access(self, entry: AccessEntry) -> None:
        """Queue one request's access entry; it is written within one flush interval."""
        self._pending.append(entry)
        if self._flusher_idle:
            self._flusher_idle = False
            self._start_flusher()
            self._wake.set()

    def flush(self) -> None:
        self._write_batch()

    def _write_batch(self) -> bool:
        """Write every queued line in one go; False when there was none."""
        with self.lock or contextlib.nullcontext():
            pending = self._pending
            if not pending:
                return False
            # Entries queued while this runs wait for the next batch; none is lost or reordered.
            batch = [pending.popleft() for _ in range(len(pending))]
            text = "\n".join(item if isinstance(item, str) else _access_line(item) for item in batch)
            # Secrets hold no line breaks (a JSON line escapes them): masking the batch masks each line.
            stream = self.stream
            stream.write(self.redactor(text) + "\n")
            stream.flush()
            return True

    def _start_flusher(self) -> None:
        if self._flusher is not None and self._flusher.is_alive():
            return
        with self.lock or contextlib.nullcontext():
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(target=self._flush_loop, name="log-flusher", daemon=True)
                self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                # Let the lines of a burst gather into one write.
                time.sleep(self.FLUSH_INTERVAL_SECONDS)
                if self._write_batch():
                    continue
                # A quiet interval: wait for the next entry. One queued between the empty batch
                # and the flag is picked up here, since its writer saw the flag still down.
                self._flusher_idle = True
                if not self._pending:
                    break
                self._flusher_idle = False


# Every handler, so a forked child can drop what it inherited: the parent writes those lines, and
# the child has no flusher thread until it starts its own.
_live_handlers: weakref.WeakSet[StdoutHandler] = weakref.WeakSet()


def _reset_handlers_after_fork() -> None:
    for handler in list(_live_handlers):
        handler._reset_flusher()


os.register_at_fork(after_in_child=_reset_handlers_after_fork)


_HANDLER_NAME = "app-json-stdout"
# json's own string escaper (C-accelerated); the same output as json.dumps(..., ensure_ascii=False).
_quote = json.encoder.encode_basestring
_access_logger = logging.getLogger("app.access")


def _access_line(entry: AccessEntry) -> str:
    """The JSON line of one request, shaped like every other record of the ``app.access`` logger.

    The fields are fixed, so the line is assembled directly: ``request_id`` is safe by
    construction (validated or generated), strings from the client are JSON-escaped.
    """
    created, request_id, method, path, status, duration, client = entry
    line = (
        f'{{"ts": "{_timestamp(created)}", "level": "INFO", "logger": "app.access", "msg": "request", '
        f'"request_id": "{request_id}", "method": {_quote(method)}, "path": {_quote(path)}, '
        f'"status": {int(status)}, "duration_ms": {duration * 1000:.2f}'
    )
    if client is not None:
        line += f', "client": {_quote(client)}'
    return line + "}"


class _AccessWriter:
    """The handler the access log writes through; set by :func:`configure_logging`."""

    handler: StdoutHandler | None = None


def log_access(*, request_id: str, method: str, path: str, status: int, duration: float, client: str | None) -> None:
    """Queue the access line of one request (``duration`` in seconds).

    The entry goes straight to the JSON handler, unformatted, and is formatted and redacted with
    its batch: building a full ``LogRecord`` (caller lookup, thread and process info), or even the
    JSON line, per request costs more than the rest of the security middleware together.
    """
    handler = _AccessWriter.handler
    if handler is not None and _access_logger.isEnabledFor(logging.INFO):
        handler.write_access((time.time(), request_id, method, path, status, duration, client))


def flush_logs() -> None:
    """Write out every line still waiting in the JSON handler (see :class:`StdoutHandler`)."""
    handler = _AccessWriter.handler
    if handler is not None:
        handler.flush()


def configure_logging(settings: Settings) -> None:
    """Route the root, uvicorn and app loggers to one JSON stdout handler with redaction.

    Idempotent: calling it again (another app instance, a worker process) replaces the handler.
    """
    handler = StdoutHandler(Redactor.from_settings(settings))
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(Redactor.from_settings(settings, user=True)))
    _AccessWriter.handler = handler

    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(existing)
    # First in line: the filter rewrites the record in place, so handlers added by others later
    # (log shippers, test capture) only ever see the redacted text.
    root.handlers.insert(0, handler)
    root.setLevel(settings.LOG_LEVEL)
    # Python's warnings go to stderr past every filter unless they are records too.
    logging.captureWarnings(True)

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
