"""Settings from environment variables (and secret files, see SECRETS_DIR), validated all at once.

Every field is named exactly like the environment variable that sets it. Problems are collected
into one :class:`ConfigError` whose text lists each bad variable with what it expects and never
contains a secret value.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

from app.core.database_url import normalise_database_url
from app.core.near_miss import near_misses

AppEnv = Literal["development", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

MIN_SECRET_KEY_LENGTH = 32
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1")

#: Fields whose values must never be echoed, in errors or anywhere else.
SECRET_FIELDS = frozenset({"DATABASE_URL", "SECRET_KEY"})

#: What each variable expects, shown next to every problem with it.
EXPECTATIONS: dict[str, str] = {
    "APP_ENV": "one of development, staging, production",
    "DATABASE_URL": (
        "postgresql://USER:PASSWORD@HOST:PORT/DB (or postgresql+psycopg://...); "
        "sqlite:///PATH only when APP_ENV is development or staging"
    ),
    "SECRET_KEY": (
        f"a random value of at least {MIN_SECRET_KEY_LENGTH} characters, e.g. the output of "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
    ),
    "ALLOWED_HOSTS": (
        "comma-separated host names, e.g. api.example.com,*.example.com "
        f"(default {','.join(DEFAULT_ALLOWED_HOSTS)}; '*' is refused in production)"
    ),
    "CORS_ORIGINS": (
        "comma-separated origins such as https://app.example.com (scheme, host, optional port; "
        "no path); empty disables CORS; '*' is refused in production"
    ),
    "LOG_LEVEL": "one of DEBUG, INFO, WARNING, ERROR, CRITICAL (default INFO)",
    "PORT": "an integer from 1 to 65535 (default 8000)",
    "WEB_CONCURRENCY": "an integer from 1 to 64, the number of worker processes (default 1)",
    "SHUTDOWN_TIMEOUT_SECONDS": "an integer from 1 to 300 (default 20)",
    "MAX_BODY_BYTES": "an integer from 1 to 1073741824, the largest request body (default 1048576)",
    "APP_VERSION": "a non-empty version string (default 0.0.0-dev)",
    "GIT_SHA": "a non-empty commit id (default unknown)",
    "METRICS_PORT": (
        "an integer from 1 to 65535 other than PORT, where Prometheus metrics answer at /metrics inside the "
        "stack's network, never published (default 9000)"
    ),
    "IMAGE_DIGEST": "sha256: and 64 hex digits, the image's digest, set by the delivering program (default unknown)",
}

# Values people leave in place of a real key. Matched as substrings of the lower-cased key, so
# "changemechangeme..." and "my-secret-key-..." are refused as well.
_PLACEHOLDER_WORDS = (
    "changeme",
    "change-me",
    "change_me",
    "replaceme",
    "replace-me",
    "replace_me",
    "placeholder",
    "insecure",
    "secret",
    "password",
    "example",
    "default",
    "dummy",
    "notset",
    "todo",
)
_MIN_DISTINCT_KEY_CHARS = 10
_HOST_RE = re.compile(r"^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
_ORIGIN_RE = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _is_periodic(value: str) -> bool:
    """True when the value is a shorter chunk repeated, e.g. 'abcabcabc...'."""
    n = len(value)
    return any(n % p == 0 and value[:p] * (n // p) == value for p in range(1, n // 2 + 1))


class Settings(BaseSettings):
    """The backend's configuration; field names equal the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    # APP_ENV comes first: later validators read it from ValidationInfo.data.
    APP_ENV: AppEnv
    DATABASE_URL: SecretStr
    SECRET_KEY: SecretStr
    ALLOWED_HOSTS: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_ALLOWED_HOSTS))
    CORS_ORIGINS: Annotated[list[str], NoDecode] = Field(default_factory=list)
    LOG_LEVEL: LogLevel = "INFO"
    PORT: int = Field(default=8000, ge=1, le=65535)
    WEB_CONCURRENCY: int = Field(default=1, ge=1, le=64)
    SHUTDOWN_TIMEOUT_SECONDS: int = Field(default=20, ge=1, le=300)
    MAX_BODY_BYTES: int = Field(default=1024 * 1024, ge=1, le=1024 * 1024 * 1024)
    APP_VERSION: str = Field(default="0.0.0-dev", min_length=1, max_length=128)
    GIT_SHA: str = Field(default="unknown", min_length=1, max_length=64)
    # After PORT: its validator compares the two.
    METRICS_PORT: int = Field(default=9000, ge=1, le=65535)
    # Not known inside the image (an image cannot hold its own digest): the program that runs it sets it.
    IMAGE_DIGEST: str = Field(default="unknown", pattern=r"^(unknown|sha256:[0-9a-f]{64})$")

    @field_validator("LOG_LEVEL", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("METRICS_PORT")
    @classmethod
    def _check_metrics_port(cls, port: int, info: ValidationInfo) -> int:
        if port == info.data.get("PORT"):
            raise ValueError(f"the same port as PORT ({port}); the metrics need a port of their own")
        return port

    @field_validator("DATABASE_URL")
    @classmethod
    def _check_database_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        url = normalise_database_url(value.get_secret_value().strip())
        if url.drivername == "sqlite" and info.data.get("APP_ENV") == "production":
            raise ValueError("SQLite is not allowed in production")
        return SecretStr(url.render_as_string(hide_password=False))

    @field_validator("SECRET_KEY")
    @classmethod
    def _check_secret_key(cls, value: SecretStr) -> SecretStr:
        key = value.get_secret_value()
        if len(key) < MIN_SECRET_KEY_LENGTH:
            raise ValueError(f"too short (fewer than {MIN_SECRET_KEY_LENGTH} characters)")
        lowered = key.lower()
        if any(word in lowered for word in _PLACEHOLDER_WORDS) or _is_periodic(lowered):
            raise ValueError("looks like a placeholder, not a random key")
        if len(set(key)) < _MIN_DISTINCT_KEY_CHARS:
            raise ValueError("too few distinct characters to be a random key")
        return value

    @field_validator("ALLOWED_HOSTS", "CORS_ORIGINS", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("ALLOWED_HOSTS")
    @classmethod
    def _check_hosts(cls, hosts: list[str], info: ValidationInfo) -> list[str]:
        hosts = [host.lower() for host in hosts]
        if not hosts:
            raise ValueError("empty; no request could be served")
        bad = [host for host in hosts if not _HOST_RE.match(host)]
        if bad:
            raise ValueError(f"invalid host pattern(s): {', '.join(map(repr, bad))}")
        if "*" in hosts and info.data.get("APP_ENV") == "production":
            raise ValueError("'*' (any host) is not allowed in production")
        return hosts

    @field_validator("CORS_ORIGINS")
    @classmethod
    def _check_origins(cls, origins: list[str], info: ValidationInfo) -> list[str]:
        origins = [origin.lower().rstrip("/") for origin in origins]
        if "*" in origins:
            if info.data.get("APP_ENV") == "production":
                raise ValueError("'*' (any origin) is not allowed in production")
            return origins
        bad = [origin for origin in origins if not _ORIGIN_RE.match(origin)]
        if bad:
            raise ValueError(f"invalid origin(s): {', '.join(map(repr, bad))}")
        return origins

    @property
    def is_production(self) -> bool:
        return self.APP_ENV == "production"

    @property
    def hsts(self) -> bool:
        """Whether responses carry Strict-Transport-Security (staging and production serve HTTPS)."""
        return self.APP_ENV in ("staging", "production")

    @property
    def database_url(self) -> URL:
        """The parsed database URL (carries the password: never log or render it)."""
        return make_url(self.DATABASE_URL.get_secret_value())


class ConfigError(Exception):
    """Invalid or missing configuration; ``str()`` is the one block shown to the operator."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    @property
    def variables(self) -> list[str]:
        return [name for name, _ in self.problems]

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"Configuration error: the backend cannot start ({count} problem{'s' if count != 1 else ''}):"]
        for name, problem in self.problems:
            expected = EXPECTATIONS.get(name)
            lines.append(f"  - {name}: {problem}" + (f"; expected {expected}" if expected else ""))
        lines.append("Set these environment variables and start the backend again.")
        return "\n".join(lines)


def _describe(error: dict[str, Any]) -> tuple[str, str]:
    name = str(error["loc"][0]) if error.get("loc") else "configuration"
    kind = error.get("type")
    if kind == "missing":
        return name, "missing"
    if kind == "value_error":
        return name, str(error.get("ctx", {}).get("error", error["msg"]))
    problem = str(error["msg"]).rstrip(".")
    if name not in SECRET_FIELDS and "input" in error and isinstance(error["input"], str):
        shown = error["input"] if len(error["input"]) <= 40 else error["input"][:40] + "..."
        problem = f"{problem} (got {shown!r})"
    return name, problem


#: Where an orchestrator mounts secrets as files named after the setting (Docker Swarm:
#: ``/run/secrets/<NAME>``). A variable of the same name in the environment wins over the file
#: (pydantic-settings' order), so a target that mounts secrets sets none of their names in the env.
SECRETS_DIR = "/run/secrets"


def _secrets_dir() -> str | None:
    """:data:`SECRETS_DIR` when it exists; pydantic-settings warns about a missing one."""
    return SECRETS_DIR if os.path.isdir(SECRETS_DIR) else None


#: A file of plain settings, one ``NAME="value"`` a line (dotenv), that an orchestrator may mount
#: instead of setting the environment (the Swarm target does: the Docker provider writes a service's
#: environment in a random order, and Swarm restarts every task when the order changes). The
#: environment wins over it, and it over :data:`SECRETS_DIR`.
SETTINGS_FILE = "/run/configs/backend.env"


def _settings_file() -> str | None:
    return SETTINGS_FILE if os.path.isfile(SETTINGS_FILE) else None


def _settings_file_names() -> list[str]:
    # The names the settings file sets (``NAME=...`` lines); their values are never read here.
    file = _settings_file()
    if file is None:
        return []
    with open(file, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return [line.split("=", 1)[0].strip() for line in lines if "=" in line and not line.startswith("#")]


def misspelled_settings(environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(name, setting it probably means)`` for each name like a misspelled setting.

    The names are the environment's variables, the files in :data:`SECRETS_DIR` and the lines of
    :data:`SETTINGS_FILE`.

    The names to compare with are the model's own fields: a setting added there is covered here.
    """
    names: list[str] = list(os.environ if environ is None else environ)
    secrets_dir = _secrets_dir()
    if secrets_dir is not None:
        names += [entry.name for entry in Path(secrets_dir).iterdir()]
    names += _settings_file_names()
    return near_misses(names, Settings.model_fields)


def _misspelling_problems(misspelled: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        (name, f"not a setting the backend reads: did you mean {meant}? Rename or remove it (refused in production)")
        for name, meant in misspelled
    ]


def load_settings() -> Settings:
    """Read and validate the environment, :data:`SETTINGS_FILE` and :data:`SECRETS_DIR`.

    Raises :class:`ConfigError` listing every problem. A name like a misspelled setting is one of
    them in production (elsewhere it is only warned about, see :func:`misspelled_settings`), and is
    listed whenever another problem is.
    """
    misspelled = _misspelling_problems(misspelled_settings())
    try:
        settings = Settings(_secrets_dir=_secrets_dir(), _env_file=_settings_file())
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for error in exc.errors():
            described = _describe(dict(error))
            if described not in problems:
                problems.append(described)
        raise ConfigError(problems + misspelled) from None
    if misspelled and settings.is_production:
        raise ConfigError(misspelled)
    return settings


#: Exit status of an entry point that cannot start for its configuration (EX_CONFIG, sysexits.h).
EX_CONFIG = 78


def load_settings_or_explain() -> Settings | None:
    """The settings, or None once the reason they cannot be loaded is on stderr (never a value).

    Every entry point (``python -m app``, ``python -m app.bench``) starts with this, so a bad
    environment always reads the same: one block naming each bad variable, no traceback.
    """
    try:
        return load_settings()
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
    except Exception as exc:
        # An error nobody foresaw may quote the environment in its message: name its type only.
        print(
            f"Configuration error: the backend cannot start: {type(exc).__name__} while reading the "
            "environment (details withheld: they may quote a secret value).",
            file=sys.stderr,
            flush=True,
        )
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
