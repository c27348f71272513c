"""Variables named like a misspelled setting: warned about, refused in production, others never named."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import config
from app.core.config import ConfigError, Settings, misspelled_settings
from app.core.near_miss import edit_distance, near_misses
from tests.conftest import SettingsFactory

# Set in containers, CI runners and shells, or by PostgreSQL and Python tooling: never a misspelling.
UNRELATED = [
    *("PATH", "HOSTNAME", "HOME", "LANG", "LC_ALL", "TERM", "PWD", "OLDPWD", "SHLVL", "USER", "SHELL", "TZ"),
    *("HOST", "HOSTTYPE", "MAIL", "LOGNAME", "EDITOR", "TMPDIR", "LD_LIBRARY_PATH", "CI", "ENV", "ENVIRONMENT"),
    *("PGPORT", "PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE", "DOCKER_HOST", "SOURCE_DATE_EPOCH"),
    *("PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "GPG_KEY", "PYTHON_VERSION"),
    *("PYTHON_SHA256", "PYTHON_PIP_VERSION", "UV_PYTHON", "UV_PYTHON_DOWNLOADS", "NODE_ENV", "FORWARDED_ALLOW_IPS"),
    *("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "no_proxy", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"),
    *("XDG_CONFIG_HOME", "XDG_DATA_HOME", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_PORT"),
    *("GIT_SSH", "GIT_DIR", "GIT_TAG", "GIT_BRANCH", "GITHUB_SHA", "GITHUB_REF", "RUNNER_OS", "SERVER_PORT"),
    *("APP_NAME", "APP_HOME", "APP_PORT", "APP_ENVIRONMENT", "LOG_FORMAT", "LOG_FILE", "SECRET_KEY_BASE"),
    *("DATABASE_HOST", "DATABASE_USER", "DATABASE_NAME", "DATABASE_PORT", "WEB_WORKERS", "MAX_WORKERS"),
]
MISSPELLED = {
    "DATABSE_URL": "DATABASE_URL",
    "DATABASE_URI": "DATABASE_URL",
    "database_url": "DATABASE_URL",
    "DATABASEURL": "DATABASE_URL",
    "SECRETKEY": "SECRET_KEY",
    "SECRET_KY": "SECRET_KEY",
    "SECERT_KEY": "SECRET_KEY",
    "Secret_Key": "SECRET_KEY",
    "APPENV": "APP_ENV",
    "APP_EVN": "APP_ENV",
    "LOGLEVEL": "LOG_LEVEL",
    "log-level": "LOG_LEVEL",
    "PORTS": "PORT",
    "PROT": "PORT",
    "port": "PORT",
    "ALLOWED_HOST": "ALLOWED_HOSTS",
    "ALLOWEDHOSTS": "ALLOWED_HOSTS",
    "CORS_ORIGIN": "CORS_ORIGINS",
    "WEB_CONCURENCY": "WEB_CONCURRENCY",
    "SHUTDOWNTIMEOUTSECONDS": "SHUTDOWN_TIMEOUT_SECONDS",
    "SHUTDOWN_TIMEOUT_SECS": None,  # four edits: too far to guess
    "MAX_BODY_BYTE": "MAX_BODY_BYTES",
    "APP_VERSOIN": "APP_VERSION",
    "GIT_SAH": "GIT_SHA",
}


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("PORT", "PORT", 0),
        ("PORT", "PROT", 1),
        ("PORT", "PGPORT", 2),
        ("A", "", 1),
        ("ab", "ba", 1),
        ("kitten", "sitting", 3),
    ],
)
def test_edit_distance_counts_a_swap_as_one_edit(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance == edit_distance(b, a)


@pytest.mark.parametrize(("name", "meant"), MISSPELLED.items())
def test_a_near_miss_of_a_setting_names_the_setting_it_probably_meant(name: str, meant: str | None) -> None:
    assert near_misses([name], Settings.model_fields) == ([(name, meant)] if meant else [])


def test_unrelated_variables_and_the_settings_themselves_are_never_named() -> None:
    assert near_misses([*UNRELATED, *Settings.model_fields], Settings.model_fields) == []


def test_the_settings_compared_with_are_the_models_own_fields() -> None:
    # A setting added to the model is covered with no second list to keep.
    found = misspelled_settings({name[:-1]: "x" for name in Settings.model_fields})
    assert [meant for _, meant in found] == sorted(Settings.model_fields, key=lambda field: field[:-1])


def test_secret_files_and_the_settings_file_are_compared_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "SECRET_KY").write_text("x")
    (secrets / "SECRET_KEY").write_text("x")
    monkeypatch.setattr(config, "SECRETS_DIR", str(secrets))
    monkeypatch.setattr(config, "SETTINGS_FILE", str(tmp_path / "absent.env"))
    assert misspelled_settings({}) == [("SECRET_KY", "SECRET_KEY")]
    settings_file = tmp_path / "backend.env"
    settings_file.write_text('# plain settings\nLOG_LEVL="DEBUG"\nPORT="8000"\n')
    monkeypatch.setattr(config, "SETTINGS_FILE", str(settings_file))
    assert sorted(misspelled_settings({"PATH": "/bin"})) == [("LOG_LEVL", "LOG_LEVEL"), ("SECRET_KY", "SECRET_KEY")]


def test_a_near_miss_is_refused_in_production(make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    monkeypatch.setenv("PATH", "/usr/bin")
    with pytest.raises(ConfigError) as caught:
        make_settings(APP_ENV="production", DATABASE_URL="postgresql://app:pw@db/app", ALLOWED_HOSTS="api.example.com")
    assert caught.value.problems == [
        (
            "LOGLEVEL",
            "not a setting the backend reads: did you mean LOG_LEVEL? Rename or remove it (refused in production)",
        )
    ]


def test_outside_production_a_near_miss_loads_and_is_listed_when_something_else_fails(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGLEVEL", "DEBUG")
    assert make_settings(APP_ENV="staging").LOG_LEVEL == "INFO"
    with pytest.raises(ConfigError) as caught:
        make_settings(APP_ENV="staging", PORT="http")
    assert caught.value.variables == ["PORT", "LOGLEVEL"]
