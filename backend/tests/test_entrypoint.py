"""The container entry point, run for real: ``python -m app`` (and the benchmark entry)."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import app.__main__ as entry
import app.core.config as config_module
from tests.conftest import TEST_SECRET_KEY
from tests.support.server import EX_CONFIG, Server, run_entry


def test_nothing_set_exits_78_listing_every_required_variable() -> None:
    result = run_entry({})
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Configuration error: the backend cannot start (3 problems):\n")
    for name in ("APP_ENV", "DATABASE_URL", "SECRET_KEY"):
        assert f"  - {name}: missing; expected " in result.stderr


def test_bad_secrets_are_named_but_never_printed() -> None:
    canary_key = "canary-key-short"
    canary_password = "canary-db-password-9f8e7d"
    result = run_entry(
        {
            "APP_ENV": "production",
            "DATABASE_URL": f"mysql://app:{canary_password}@db/app",
            "SECRET_KEY": canary_key,
            "ALLOWED_HOSTS": "api.example.com",
        }
    )
    assert result.returncode == EX_CONFIG
    assert "  - DATABASE_URL: unsupported database scheme; use postgresql:// or sqlite:///" in result.stderr
    assert "  - SECRET_KEY: too short" in result.stderr
    for output in (result.stdout, result.stderr):
        assert canary_key not in output
        assert canary_password not in output
        assert "Traceback" not in output


def test_an_unforeseen_error_while_loading_settings_exits_78_without_its_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = "canary-" + TEST_SECRET_KEY[:12]

    def failing() -> None:
        raise RuntimeError(f"could not parse {canary}")

    monkeypatch.setattr(config_module, "load_settings", failing)
    assert entry.main() == EX_CONFIG
    err = capsys.readouterr().err
    assert err.startswith("Configuration error: the backend cannot start: RuntimeError while reading the environment")
    assert canary not in err


def test_sqlite_in_production_exits_78(tmp_path: Path) -> None:
    result = run_entry(
        {"APP_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/app.db", "SECRET_KEY": TEST_SECRET_KEY}
    )
    assert result.returncode == EX_CONFIG
    assert "  - DATABASE_URL: SQLite is not allowed in production;" in result.stderr
    assert TEST_SECRET_KEY not in result.stderr


def test_bench_entry_refuses_production() -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://app:pw@db/app",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ALLOWED_HOSTS": "api.example.com",
    }
    result = run_entry(env, "app.bench", "--middleware", "off")
    assert result.returncode == EX_CONFIG
    assert "app.bench refuses APP_ENV=production" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_an_in_flight_request_finish_then_exits_0(
    make_server: type[Server], server_env: dict[str, str], workers: str
) -> None:
    server = make_server({**server_env, "SHUTDOWN_TIMEOUT_SECONDS": "15", "WEB_CONCURRENCY": workers})
    server.wait_healthy()
    assert server.get("/healthz").getheader("server") is None

    body = json.dumps({"name": "in flight during shutdown"}).encode()
    # The request is in flight: headers and half the body are sent, the rest arrives after SIGTERM.
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        f"POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Request-ID: in-flight-1\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:10])
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert server.proc.poll() is None, "the server exited with a request in flight"
    sock.sendall(body[10:])
    response = http.client.HTTPResponse(sock)
    response.begin()
    payload = json.loads(response.read())
    sock.close()
    assert response.status == 201
    assert payload["name"] == "in flight during shutdown"
    assert server.proc.wait(timeout=10) == 0
    out, err = server.stop()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "app.access" and r.get("request_id") == "in-flight-1"]
    assert access[0]["status"] == 201
    assert any(r["msg"] == "Shutting down" for r in records)
    assert "Traceback" not in out + err
    assert TEST_SECRET_KEY not in out + err


# Imports `app.__main__` the way `python -m app` runs it, and reports whether SIGTERM was handled
# by the time the first module of the app proper (its settings) began to load.
_HANDLED_BEFORE_IMPORTS = """
import importlib.abc, signal, sys
seen = []
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "app.core.config" and not seen:
            seen.append(signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None))
        return None
sys.meta_path.insert(0, Watch())
import app.__main__
print(seen[0])
"""


def test_sigterm_is_handled_before_the_app_loads() -> None:
    # Unhandled, a SIGTERM is ignored by a container's PID 1 until the engine's SIGKILL: a release
    # deleted while it starts would take the whole stop timeout.
    result = subprocess.run(
        [sys.executable, "-c", _HANDLED_BEFORE_IMPORTS],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr


def test_sigterm_while_starting_stops_at_once_and_cleanly(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    server = make_server(server_env)
    time.sleep(0.1)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=10) == 0
    out, err = server.stop()
    assert "Traceback" not in out + err


def test_shutdown_timeout_bounds_a_stuck_request(make_server: type[Server], server_env: dict[str, str]) -> None:
    server = make_server({**server_env, "SHUTDOWN_TIMEOUT_SECONDS": "1"})
    server.wait_healthy()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    # Promises a body that never comes: only the shutdown timeout can end this request.
    sock.sendall(b"POST /api/v1/items HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")
    time.sleep(0.3)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=10)
    assert time.monotonic() - signalled < 4
    sock.close()


def test_bench_entry_serves_without_middleware(make_server: type[Server], server_env: dict[str, str]) -> None:
    bare = make_server(server_env, "app.bench", "--middleware", "off")
    full = make_server(server_env, "app.bench", "--middleware", "on")
    bare.wait_healthy()
    full.wait_healthy()
    bare_response = bare.get("/healthz")
    full_response = full.get("/healthz")
    assert bare_response.status == full_response.status == 200
    assert bare_response.getheader("content-security-policy") is None
    assert bare_response.getheader("x-request-id") is None
    assert full_response.getheader("content-security-policy") == (
        "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    assert full_response.getheader("x-request-id") is not None


def test_bench_entry_can_leave_out_the_metrics_alone(make_server: type[Server], server_env: dict[str, str]) -> None:
    quiet = make_server(server_env, "app.bench", "--middleware", "on", "--metrics", "off")
    counted = make_server(server_env, "app.bench", "--middleware", "on")
    for server in (quiet, counted):
        server.wait_healthy()
        response = server.get("/healthz")
        assert response.status == 200
        assert response.getheader("x-request-id") is not None
    deadline = time.monotonic() + 10
    while "backend_http_requests_total{" not in counted.metrics():
        assert time.monotonic() < deadline, "the bench entry with metrics counted nothing"
        time.sleep(0.05)
    # The port still answers (build info), with no request counted.
    assert "backend_build_info{" in quiet.metrics()
    assert "backend_http_requests_total{" not in quiet.metrics()


def test_a_misspelled_setting_is_warned_about_by_name_and_the_app_serves(
    make_server: type[Server], server_env: dict[str, str]
) -> None:
    unrelated = dict.fromkeys(("HOSTNAME", "HOME", "LANG", "PGPORT", "PYTHONPATH", "VIRTUAL_ENV", "GIT_SSH"), "x")
    server = make_server({**server_env, **unrelated, "LOGLEVEL": "DEBUG", "database_url": "sqlite:///x.db"})
    server.wait_healthy()
    out, err = server.terminate()
    warnings = [
        r
        for r in (json.loads(line) for line in out.splitlines() if line.startswith("{"))
        if r["logger"] == "app.config"
    ]
    assert [(r["level"], r["event"]) for r in warnings] == [
        ("WARNING", {"variable": "LOGLEVEL", "meant": "LOG_LEVEL"}),
        ("WARNING", {"variable": "database_url", "meant": "DATABASE_URL"}),
    ]
    assert warnings[0]["msg"] == (
        "LOGLEVEL is not a setting the backend reads and is ignored: did you mean LOG_LEVEL? "
        "(production refuses to start)"
    )
    # The unrelated variables (and PATH) are named nowhere.
    assert not any(name in out + err for name in ("GIT_SSH", "PGPORT", "VIRTUAL_ENV", "PYTHONPATH"))
    assert "sqlite:///x.db" not in out + err  # names only, never a value


def test_a_misspelled_setting_is_refused_in_production() -> None:
    env = {
        "APP_ENV": "production",
        "DATABASE_URL": "postgresql://app:pw@db/app",
        "SECRET_KEY": TEST_SECRET_KEY,
        "ALLOWED_HOSTS": "api.example.com",
        "SECRETKEY": TEST_SECRET_KEY,
        "HOSTNAME": "api-1",
    }
    result = run_entry(env)
    assert result.returncode == EX_CONFIG
    assert result.stdout == ""
    assert result.stderr.startswith("Configuration error: the backend cannot start (1 problem):\n")
    assert "  - SECRETKEY: not a setting the backend reads: did you mean SECRET_KEY?" in result.stderr
    assert "HOSTNAME" not in result.stderr
    assert TEST_SECRET_KEY not in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_exits_78_naming_port(server_env: dict[str, str], workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104  # where the backend listens
        taken.listen()
        port = taken.getsockname()[1]
        result = run_entry({**server_env, "PORT": str(port), "WEB_CONCURRENCY": workers})
    assert result.returncode == EX_CONFIG
    assert result.stderr == (
        f"Configuration error: the backend cannot start: PORT={port} is already in use; "
        "stop what listens there or set PORT to a free port.\n"
    )
    assert "Traceback" not in result.stdout + result.stderr
    # Refused before the app started: no database was opened, no start-up logged.
    assert '"msg": "starting"' not in result.stdout
