"""The API fuzzer against the real server and a real PostgreSQL: ``python -m tests.support.fuzz``.

Starts a throwaway PostgreSQL cluster and ``python -m app`` with ``APP_ENV=staging`` (a non-production
instance serves its OpenAPI document), runs schemathesis with ``schemathesis.toml``, then stops the
server with SIGTERM. Fails, never skips: when PostgreSQL's binaries or schemathesis are missing,
when the server does not come up, when schemathesis reports any failure, and when the server
logged an error or did not stop cleanly (an error after a response started is invisible to a
client, so only the log shows it).
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time

import pytest

from tests.support.postgres import PostgresCluster
from tests.support.server import BACKEND_DIR, Server

CONFIG = BACKEND_DIR / "schemathesis.toml"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*: ")


def fuzz(cluster: PostgresCluster) -> int:
    server = Server({"APP_ENV": "staging", "DATABASE_URL": cluster.url, "SECRET_KEY": secrets.token_urlsafe(48)})
    try:
        server.wait_healthy(within=30)
        started = time.monotonic()
        command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run"]
        result = subprocess.run(
            [*command, f"http://127.0.0.1:{server.port}/openapi.json"], cwd=BACKEND_DIR, check=False
        )
        seconds = time.monotonic() - started
        out, err = server.terminate()
    finally:
        server.stop()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    errors = [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    requests = sum(1 for r in records if r["logger"] == "app.access")
    for record in errors[:10]:
        # The message and the exception's own line ("Type: message"); the rest is in the server's log.
        raised = [line for line in str(record.get("exc", "")).splitlines() if EXCEPTION_LINE.match(line)]
        print(f"server error [{record.get('request_id')}] {record['msg']}: {raised[-1:]}", file=sys.stderr)
    if len(errors) > 10:
        print(f"... and {len(errors) - 10} more server errors", file=sys.stderr)
    if err.strip():
        print(f"server stderr:\n{err}", file=sys.stderr)
    print(
        f"fuzz: schemathesis exit {result.returncode} in {seconds:.1f} s; server answered {requests} requests, "
        f"logged {len(errors)} errors, exited {server.proc.returncode}"
    )
    clean = result.returncode == 0 and not errors and not err.strip() and server.proc.returncode == 0
    return 0 if clean else 1


def main() -> int:
    try:
        cluster = PostgresCluster()
        try:
            cluster.start()
            return fuzz(cluster)
        finally:
            cluster.destroy()
    except pytest.fail.Exception as exc:  # the helpers' way of saying what is missing
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
