"""The PostgreSQL test fixture fails loudly, never skips, when the server binaries are missing."""

from __future__ import annotations

import pytest

from tests.support import postgres


def test_missing_binaries_fail_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_BIN", "/nonexistent/bin")
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    monkeypatch.setattr("shutil.which", lambda _name: None)
    with pytest.raises(pytest.fail.Exception, match=r"PostgreSQL server binaries \(initdb, pg_ctl\) not found"):
        postgres.find_pg_bin()


def test_pg_bin_override_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    found = postgres.find_pg_bin()
    monkeypatch.setenv("PG_BIN", str(found))
    monkeypatch.setattr("glob.glob", lambda _pattern: [])
    assert postgres.find_pg_bin() == found
