"""JSON request logs, and canary secrets that must never reach the log."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from urllib.parse import quote

import pytest
from fastapi import Request
from fastapi.testclient import TestClient

from app.core.logging import REDACTED, JsonFormatter, Redactor, StdoutHandler, flush_logs
from app.main import create_app
from tests.conftest import FAST_BACKOFF, SettingsFactory


def read_stdout(capsys: pytest.CaptureFixture[str]) -> str:
    """What the app wrote to stdout so far, including log lines still waiting for their batch."""
    flush_logs()
    return capsys.readouterr().out


def json_lines(text: str) -> list[dict[str, object]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


@pytest.fixture
def canaries() -> dict[str, str]:
    return {
        "key": "CANARYKEY" + secrets.token_urlsafe(32),
        # Characters that URL encoding changes, so both spellings must be masked.
        "db_password": "Canary/Pw@" + secrets.token_hex(8),
        "auth": "Bearer canary-token-" + secrets.token_hex(8),
        "cookie": "session=canary-cookie-" + secrets.token_hex(8),
        "query": "canary-query-" + secrets.token_hex(8),
    }


def test_redactor_masks_every_spelling() -> None:
    redactor = Redactor(["topsecretvalue", "p@ss/word", quote("p@ss/word", safe=""), "abc"])
    assert redactor("key=topsecretvalue pw=p@ss/word enc=p%40ss%2Fword abc") == (
        f"key={REDACTED} pw={REDACTED} enc={REDACTED} abc"
    )


def test_request_log_fields_and_no_secrets(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str], canaries: dict[str, str]
) -> None:
    db_url = f"postgresql://app:{quote(canaries['db_password'], safe='')}@127.0.0.1:1/app"
    settings = make_settings(APP_ENV="staging", SECRET_KEY=canaries["key"], DATABASE_URL=db_url)
    app = create_app(settings, backoff=FAST_BACKOFF)

    async def careless(request: Request) -> dict[str, str]:
        # A route that logs what it should not: the filter must still mask it.
        logging.getLogger("app.careless").warning(
            "settings dump: key=%s url=%s pw=%s",
            settings.SECRET_KEY.get_secret_value(),
            settings.DATABASE_URL.get_secret_value(),
            canaries["db_password"],
        )
        try:
            raise ValueError(f"failed with {settings.SECRET_KEY.get_secret_value()}")
        except ValueError:
            logging.getLogger("app.careless").exception("with traceback")
        return {"ok": request.url.path}

    app.add_api_route("/careless", careless)
    with TestClient(app, base_url="http://localhost") as client:
        flush_logs()
        capsys.readouterr()
        response = client.get(
            f"/careless?token={canaries['query']}",
            headers={"Authorization": canaries["auth"], "Cookie": canaries["cookie"], "X-Request-ID": "log-test-1"},
        )
        assert response.status_code == 200
        out = read_stdout(capsys)

    for name, canary in canaries.items():
        assert canary not in out, name
    assert quote(canaries["db_password"], safe="") not in out
    records = json_lines(out)
    careless_records = [r for r in records if r["logger"] == "app.careless"]
    assert careless_records[0]["msg"] == f"settings dump: key={REDACTED} url={REDACTED} pw={REDACTED}"
    assert f"ValueError: failed with {REDACTED}" in str(careless_records[1]["exc"])
    access = [r for r in records if r["logger"] == "app.access"]
    assert len(access) == 1
    line = access[0]
    assert line["msg"] == "request"
    assert line["request_id"] == "log-test-1"
    assert line["method"] == "GET"
    assert line["path"] == "/careless"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"


def test_unhandled_error_logged_with_request_id_and_redacted(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str], canaries: dict[str, str]
) -> None:
    settings = make_settings(SECRET_KEY=canaries["key"])
    app = create_app(settings, backoff=FAST_BACKOFF)

    async def boom() -> None:
        raise RuntimeError(f"boom {settings.SECRET_KEY.get_secret_value()}")

    app.add_api_route("/boom", boom)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        flush_logs()
        capsys.readouterr()
        response = client.get("/boom", headers={"X-Request-ID": "err-1"})
        out = read_stdout(capsys)
    assert response.status_code == 500
    assert canaries["key"] not in out
    errors = [r for r in json_lines(out) if r["logger"] == "app.error"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "err-1"
    assert f"RuntimeError: boom {REDACTED}" in str(errors[0]["exc"])
    access = [r for r in json_lines(out) if r["logger"] == "app.access"]
    assert access[0]["status"] == 500


def test_database_errors_in_logs_do_not_reveal_password(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str], canaries: dict[str, str]
) -> None:
    # Nothing listens on port 1: every reconnect attempt fails and is logged.
    db_url = f"postgresql://app:{quote(canaries['db_password'], safe='')}@127.0.0.1:1/app"
    app = create_app(make_settings(APP_ENV="staging", DATABASE_URL=db_url), backoff=FAST_BACKOFF)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/readyz").status_code == 503
        out = read_stdout(capsys)
    assert "database not reachable (attempt 1" in out
    assert canaries["db_password"] not in out
    assert quote(canaries["db_password"], safe="") not in out


def test_log_level_filters(make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]) -> None:
    app = create_app(make_settings(LOG_LEVEL="WARNING"), backoff=FAST_BACKOFF)
    with TestClient(app, base_url="http://localhost") as client:
        flush_logs()
        capsys.readouterr()
        client.get("/healthz")
        out = read_stdout(capsys)
    assert [r for r in json_lines(out) if r["logger"] == "app.access"] == []


def test_access_line_escapes_and_redacts_the_path(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str], canaries: dict[str, str]
) -> None:
    app = create_app(make_settings(SECRET_KEY=canaries["key"]), backoff=FAST_BACKOFF)
    with TestClient(app, base_url="http://localhost") as client:
        flush_logs()
        capsys.readouterr()
        odd = client.get('/odd/"quoted"\\back/\u00fc')
        leaked = client.get(f"/leak/{canaries['key']}")
        out = read_stdout(capsys)
    assert odd.status_code == leaked.status_code == 404
    assert canaries["key"] not in out
    access = [r for r in json_lines(out) if r["logger"] == "app.access"]
    assert [r["path"] for r in access] == ['/odd/"quoted"\\back/\u00fc', f"/leak/{REDACTED}"]
    assert [r["status"] for r in access] == [404, 404]


def test_access_lines_wait_for_their_batch_and_any_record_flushes_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    handler = StdoutHandler()
    handler.setFormatter(JsonFormatter())
    handler.FLUSH_INTERVAL_SECONDS = 30.0  # the timed flush stays out of this test's way

    def ours() -> list[dict[str, object]]:
        # Handlers of earlier tests may flush their own leftovers into this capture: skip those.
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if "batch-test" in line]

    handler.write_line('{"batch-test": 1}')
    assert ours() == []
    handler.emit(logging.LogRecord("batch-test", logging.INFO, __file__, 1, "stopped", None, None))
    first, record = ours()
    assert first == {"batch-test": 1}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(record.pop("ts")))
    assert record == {"level": "INFO", "logger": "batch-test", "msg": "stopped"}
    for n in range(StdoutHandler.MAX_PENDING_LINES):
        handler.write_line(f'{{"batch-test": {n}}}')
    assert len(ours()) == StdoutHandler.MAX_PENDING_LINES


def test_a_waiting_line_is_written_within_the_flush_interval(capsys: pytest.CaptureFixture[str]) -> None:
    handler = StdoutHandler()
    handler.FLUSH_INTERVAL_SECONDS = 0.01
    capsys.readouterr()
    handler.write_line('{"marker": "waiting line"}')
    deadline = time.monotonic() + 5
    out: list[str] = []
    # Other apps' handlers of earlier tests may flush their own leftovers into this capture too.
    while '{"marker": "waiting line"}' not in out and time.monotonic() < deadline:
        time.sleep(0.01)
        out += capsys.readouterr().out.splitlines()
    assert out.count('{"marker": "waiting line"}') == 1
