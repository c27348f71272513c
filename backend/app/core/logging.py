"""JSON-lines logging on stdout with redaction of secret values.

Each record becomes one JSON object per line. A :class:`RedactingFilter` masks the SECRET_KEY and
the database password (and the whole DATABASE_URL) wherever they might end up in a message or a
traceback, so an accidental ``log.info(settings.DATABASE_URL...)`` cannot leak them.
"""

from __future__ import annotations

import json
import logging
import sys
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


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and known extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
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
    """Writes to whatever ``sys.stdout`` is at emit time (it may be replaced, e.g. by pytest)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


_HANDLER_NAME = "app-json-stdout"


def configure_logging(settings: Settings) -> None:
    """Route the root, uvicorn and app loggers to one JSON stdout handler with redaction.

    Idempotent: calling it again (another app instance, a worker process) replaces the handler.
    """
    handler = StdoutHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(Redactor.from_settings(settings)))

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
