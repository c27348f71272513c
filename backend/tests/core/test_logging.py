"""JSON request logs, and canary secrets that must never reach the log."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import time
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi import Depends, Request
from fastapi.testclient import TestClient

from app.core.logging import REDACTED, AccessEntry, JsonFormatter, Redactor, StdoutHandler, flush_logs
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


def test_the_database_user_is_masked_in_every_record_but_not_in_access_lines(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    user = "items"  # a word a path may hold as well
    settings = make_settings(DATABASE_URL=f"postgresql://{user}:pw-{secrets.token_hex(6)}@127.0.0.1:1/app")
    app = create_app(settings, backoff=FAST_BACKOFF)
    with TestClient(app, base_url="http://localhost") as client:
        flush_logs()
        capsys.readouterr()
        # What a connection error says, in a message and in a traceback.
        logging.getLogger("app.db").warning('connection failed: authentication failed for user "%s"', user)
        try:
            raise RuntimeError(f"FATAL: role {user} does not exist")
        except RuntimeError:
            logging.getLogger("app.db").exception("not reachable")
        client.get("/api/v1/items/0")
        out = read_stdout(capsys)
    records = json_lines(out)
    # The app's own connect loop logs to app.db too, at moments of its own: pick this test's two records.
    db = [r for r in records if r["logger"] == "app.db"]
    warned = [r for r in db if str(r["msg"]).startswith("connection failed: authentication")]
    failed = [r for r in db if r["msg"] == "not reachable"]
    assert [r["msg"] for r in warned] == [f"connection failed: authentication failed for user {REDACTED}"]
    assert len(failed) == 1
    assert f"RuntimeError: FATAL: role {REDACTED} does not exist" in str(failed[0]["exc"])
    assert [r["path"] for r in records if r["logger"] == "app.access"] == ["/api/v1/items/0"]


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


def test_an_error_after_the_response_started_keeps_the_status_the_client_got(
    make_settings: SettingsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_settings(), backoff=FAST_BACKOFF)

    def failing_cleanup() -> Iterator[None]:
        # Like closing a database session while the database shuts down: the clean-up of a
        # dependency runs after the response has gone out, and fails there.
        yield
        raise RuntimeError("cleanup failed")

    async def answered() -> dict[str, str]:
        return {"status": "answered"}

    app.add_api_route("/answered", answered, dependencies=[Depends(failing_cleanup)])
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        flush_logs()
        capsys.readouterr()
        response = client.get("/answered", headers={"X-Request-ID": "late-error-1"})
        out = read_stdout(capsys)
    assert response.status_code == 200
    assert response.json() == {"status": "answered"}
    records = [r for r in json_lines(out) if r.get("request_id") == "late-error-1"]
    assert [(r["logger"], r.get("status")) for r in records] == [("app.error", None), ("app.access", 200)]
    assert records[0]["msg"] == "error after the response started (status 200)"
    assert "RuntimeError: cleanup failed" in str(records[0]["exc"])


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


def access_entry(path: str, request_id: str = "batch-test") -> AccessEntry:
    return (time.time(), request_id, "GET", path, 200, 0.00125, "127.0.0.1")


def test_access_entries_wait_for_their_batch_and_any_record_flushes_in_order(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = StdoutHandler(Redactor(["batch-test-secret"]))
    handler.setFormatter(JsonFormatter())
    handler.FLUSH_INTERVAL_SECONDS = 30.0  # the timed flush stays out of this test's way

    def ours() -> list[dict[str, object]]:
        # Handlers of earlier tests may flush their own leftovers into this capture: skip those.
        lines = capsys.readouterr().out.splitlines()
        return [json.loads(line) for line in lines if "batch-test" in line]

    handler.write_access(access_entry("/first"))
    handler.write_access(access_entry("/leak/batch-test-secret"))
    assert ours() == []
    handler.emit(logging.LogRecord("batch-test", logging.INFO, __file__, 1, "stopped", None, None))
    first, second, record = ours()
    for line in (first, second, record):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(line.pop("ts")))
    assert first == {
        "level": "INFO",
        "logger": "app.access",
        "msg": "request",
        "request_id": "batch-test",
        "method": "GET",
        "path": "/first",
        "status": 200,
        "duration_ms": 1.25,
        "client": "127.0.0.1",
    }
    assert second["path"] == f"/leak/{REDACTED}"
    assert record == {"level": "INFO", "logger": "batch-test", "msg": "stopped"}


def test_a_waiting_entry_is_written_within_the_flush_interval_and_the_flusher_wakes_again(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = StdoutHandler()
    handler.FLUSH_INTERVAL_SECONDS = 0.01
    capsys.readouterr()
    out: list[str] = []

    def wait_for(marker: str) -> None:
        deadline = time.monotonic() + 5
        # Other apps' handlers of earlier tests may flush their own leftovers into this capture too.
        while not any(marker in line for line in out) and time.monotonic() < deadline:
            time.sleep(0.01)
            out.extend(capsys.readouterr().out.splitlines())

    handler.write_access(access_entry("/waiting-1"))
    wait_for("/waiting-1")
    # After a quiet interval the flusher sleeps until the next entry wakes it.
    deadline = time.monotonic() + 5
    while not handler._flusher_idle and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler._flusher_idle
    handler.write_access(access_entry("/waiting-2"))
    wait_for("/waiting-2")
    paths = [json.loads(line)["path"] for line in out if "/waiting-" in line]
    assert paths == ["/waiting-1", "/waiting-2"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_drops_the_inherited_queue_and_starts_its_own_flusher() -> None:
    handler = StdoutHandler()
    handler.FLUSH_INTERVAL_SECONDS = 30.0
    handler.write_access(access_entry("/parent"))
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads; this child only checks state.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's entry is the parent's to write
        inherited = len(handler._pending)
        handler.write_access(access_entry("/child"))
        alive = handler._flusher is not None and handler._flusher.is_alive()
        os._exit(0 if inherited == 0 and alive else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [entry[3] for entry in handler._pending] == ["/parent"]
    handler._pending.clear()
