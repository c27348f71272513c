"""Bad environments against the real entry point: exit 78, every bad variable named, no secret shown.

Each environment runs ``python -m app`` in its own process. The fake secrets are assembled at run
time from characters chosen so that no four of them in a row occur in any text the backend prints
on its own; the check is then simple and strict: no substring of four or more characters of a
secret value may appear in the output. (The URL scheme is exempt: the help text names it.)
"""

from __future__ import annotations

import contextlib
import random
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest

from app.core.database_url import ENCODE_COMMAND
from tests.support.postgres import PG_DB, PG_USER, PostgresCluster, free_port
from tests.support.server import EX_CONFIG, Server, run_entry

SECRET_VARIABLES = ("DATABASE_URL", "SECRET_KEY")
LEAK_WINDOW = 4
# Consonants and a few digits: no English word, no number the help text prints, no variable name.
_ALPHABET = "BCDFGHJKMNPQRTVWXZbcdfhjkmnpqrtvwxz26789"
_random = random.Random(12)  # noqa: S311  # fixed seed: the same canaries every run, so a collision shows at once


def canary(length: int = 12) -> str:
    return "".join(_random.choices(_ALPHABET, k=length))


def url(scheme: str, userinfo: str, rest: str) -> str:
    """A database URL assembled at run time (so the repository holds no credential-shaped literal)."""
    return f"{scheme}://{userinfo}@{rest}"


KEY = canary(40)  # a valid SECRET_KEY for environments whose problem lies elsewhere
USER, PASSWORD, HOST, DB = canary(8), canary(14), canary(9), canary(7)
GOOD_URL = url("postgresql", f"{USER}:{PASSWORD}", f"{HOST}:6432/{DB}")
#: Each part of a PostgreSQL URL, as a valid one holds it.
URL_PARTS = {
    "scheme": "postgresql",
    "user": canary(8),
    "password": canary(14),
    "host": canary(9),
    "port": "6432",
    "database": canary(7),
    "query": f"{canary(4)}={canary(6)}",
}


def url_with(part: str, text: str) -> str:
    """A PostgreSQL URL with ``text`` spliced into the middle of one of its parts."""
    parts = dict(URL_PARTS)
    value = parts[part]
    parts[part] = value[: len(value) // 2] + text + value[len(value) // 2 :]
    userinfo = f"{parts['user']}:{parts['password']}"
    return url(parts["scheme"], userinfo, f"{parts['host']}:{parts['port']}/{parts['database']}?{parts['query']}")


#: What a character may not be, unencoded, in each part: RFC 3986's delimiters, "%" not starting an
#: escape (no canary character follows: "%B2" would be one), a space.
RESERVED_IN = {
    "user": ["@", ":@", "/", "#", "%z"],
    "password": ["@", "#", "/", "?", ":", "%z", " "],
    "host": ["@", "#", "%z", "["],
    "port": ["@", "#", "x"],
    "database": ["#", "/", "%z"],
    "query": ["#", "%z"],
}
# Control characters (an environment cannot hold NUL), DEL, and a character outside ASCII.
CONTROL_CHARACTERS = {"soh": "\x01", "tab": "\t", "newline": "\n", "escape": "\x1b", "del": "\x7f", "e-acute": "\u00e9"}


@dataclass(frozen=True)
class BadEnv:
    id: str
    env: dict[str, str]
    bad: frozenset[str]
    #: Extra phrases the block must hold (the reason given for a variable).
    says: tuple[str, ...] = field(default=())


def bad(id_: str, bad_vars: set[str], *says: str, **env: str) -> BadEnv:
    full = {"APP_ENV": "staging", "DATABASE_URL": GOOD_URL, "SECRET_KEY": KEY, **env}
    return BadEnv(id_, {k: v for k, v in full.items() if v != "<unset>"}, frozenset(bad_vars), says)


P1, P2, P3 = canary(10), canary(10), canary(10)
NOT_A_URL = "not a valid URL"
PERCENT_ENCODE_SAYS = ("must be percent-encoded", "@ as %40", f"`{ENCODE_COMMAND}`")
NOT_PRINTABLE_SAYS = ("holds a control character, a space or a character outside ASCII", "@ as %40", ENCODE_COMMAND)
MATRIX = [
    # DATABASE_URL whose password spills into the parts a parser reports on.
    bad(
        "password-with-at-and-colon",
        {"DATABASE_URL"},
        NOT_A_URL,
        DATABASE_URL=url("postgresql", f"{USER}:{P1[:5]}@{P1[5:8]}:{P1[8:]}77", f"{HOST}:5432/{DB}"),
    ),
    bad("password-as-port", {"DATABASE_URL"}, NOT_A_URL, DATABASE_URL=url("postgresql", USER, f"{HOST}:{P2}/{DB}")),
    bad(
        "port-with-letters",
        {"DATABASE_URL"},
        NOT_A_URL,
        DATABASE_URL=url("postgresql", f"{USER}:{P1}", f"{HOST}:54x{P3}/{DB}"),
    ),
    bad(
        "port-zero",
        {"DATABASE_URL"},
        "the port must be a number from 1 to 65535",
        DATABASE_URL=url("postgresql", f"{USER}:{P1}", f"{HOST}:0/{DB}"),
    ),
    bad(
        "port-too-large",
        {"DATABASE_URL"},
        "the port must be",
        DATABASE_URL=url("postgresql", f"{USER}:{P2}", f"{HOST}:99999/{DB}"),
    ),
    bad(
        "port-negative",
        {"DATABASE_URL"},
        "the port must be",
        DATABASE_URL=url("postgres", f"{USER}:{P3}", f"{HOST}:-6/{DB}"),
    ),
    bad("unclosed-ipv6", {"DATABASE_URL"}, NOT_A_URL, DATABASE_URL=url("postgresql", f"{USER}:{P1}", f"[::1/{DB}")),
    bad("no-host", {"DATABASE_URL"}, "has no host", DATABASE_URL=url("postgresql", f"{USER}:{P1}", f"/{DB}")),
    bad(
        "no-database",
        {"DATABASE_URL"},
        "has no database name",
        DATABASE_URL=url("postgresql", f"{USER}:{P2}", f"{HOST}:5432"),
    ),
    bad(
        "unknown-scheme",
        {"DATABASE_URL"},
        "unsupported database scheme",
        DATABASE_URL=url("mysqlx" + canary(4), f"{USER}:{P1}", f"{HOST}/{DB}"),
    ),
    bad(
        "uninstalled-driver",
        {"DATABASE_URL"},
        "this driver is not installed",
        DATABASE_URL=url("postgresql+pg8000", f"{USER}:{P3}", f"{HOST}/{DB}"),
    ),
    bad("no-scheme", {"DATABASE_URL"}, NOT_A_URL, DATABASE_URL=f"{USER}:{P1}@{HOST}/{DB}"),
    bad("free-text", {"DATABASE_URL"}, NOT_A_URL, DATABASE_URL=f"{P2} {P3}"),
    bad("empty-url", {"DATABASE_URL"}, NOT_A_URL, DATABASE_URL=""),
    bad(
        "sqlite-in-memory", {"DATABASE_URL"}, "SQLite URL needs a file path", DATABASE_URL=f"sqlite:///:memory:?{P1}=1"
    ),
    bad(
        "sqlite-in-production",
        {"DATABASE_URL"},
        "SQLite is not allowed in production",
        APP_ENV="production",
        ALLOWED_HOSTS="api.example.com",
        DATABASE_URL=f"sqlite:////{P2}/{P3}.db",
    ),
    bad("database-url-unset", {"DATABASE_URL"}, "missing", DATABASE_URL="<unset>"),
    # SECRET_KEY refused for each reason.
    bad("key-short", {"SECRET_KEY"}, "too short", SECRET_KEY=canary(20)),
    bad("key-one-short-of-32", {"SECRET_KEY"}, "too short", SECRET_KEY=canary(31)),
    bad("key-periodic", {"SECRET_KEY"}, "looks like a placeholder", SECRET_KEY=canary(8) * 5),
    bad("key-changeme", {"SECRET_KEY"}, "looks like a placeholder", SECRET_KEY="changeme" + canary(30)),
    bad("key-dummy", {"SECRET_KEY"}, "looks like a placeholder", SECRET_KEY=canary(15) + "dummy" + canary(15)),
    bad("key-low-variety", {"SECRET_KEY"}, "too few distinct characters", SECRET_KEY="".join(sorted(canary(4) * 9))),
    bad("key-empty", {"SECRET_KEY"}, "too short", SECRET_KEY=""),
    bad("key-unset", {"SECRET_KEY"}, "missing", SECRET_KEY="<unset>"),
    # Both secrets at once, and secrets beside plain problems.
    bad(
        "both-secrets",
        {"DATABASE_URL", "SECRET_KEY"},
        DATABASE_URL=url("postgresql", USER, f"{HOST}:{P1}/{DB}"),
        SECRET_KEY=canary(12),
    ),
    bad(
        "everything-unset",
        {"APP_ENV", "DATABASE_URL", "SECRET_KEY"},
        APP_ENV="<unset>",
        DATABASE_URL="<unset>",
        SECRET_KEY="<unset>",
    ),
    bad("app-env-bad-secrets-valid", {"APP_ENV"}, "got 'prod'", APP_ENV="prod"),
    bad(
        "plain-ints-bad-secrets-valid",
        {"PORT", "WEB_CONCURRENCY", "SHUTDOWN_TIMEOUT_SECONDS", "MAX_BODY_BYTES", "METRICS_PORT"},
        PORT="http",
        WEB_CONCURRENCY="0",
        SHUTDOWN_TIMEOUT_SECONDS="301",
        MAX_BODY_BYTES="-1",
        METRICS_PORT="65536",
    ),
    bad("metrics-on-the-app-port", {"METRICS_PORT"}, "the same port as PORT", PORT="8100", METRICS_PORT="8100"),
    bad("image-digest-a-tag-and-key", {"IMAGE_DIGEST", "SECRET_KEY"}, IMAGE_DIGEST="latest", SECRET_KEY=canary(10)),
    bad(
        "wildcards-in-production",
        {"ALLOWED_HOSTS", "CORS_ORIGINS"},
        "not allowed in production",
        APP_ENV="production",
        ALLOWED_HOSTS="*",
        CORS_ORIGINS="*",
    ),
    bad(
        "log-level-and-url",
        {"LOG_LEVEL", "DATABASE_URL"},
        LOG_LEVEL="loud",
        DATABASE_URL=url("postgresql", f"{USER}:{P2}:{P3}", f"{HOST}:{P1}/{DB}"),
    ),
    bad(
        "origins-and-key", {"CORS_ORIGINS", "SECRET_KEY"}, CORS_ORIGINS="ftp://files.example.com", SECRET_KEY=canary(9)
    ),
    bad("hosts-and-url", {"ALLOWED_HOSTS", "DATABASE_URL"}, ALLOWED_HOSTS="bad host", DATABASE_URL=f"{P3}://"),
    bad(
        "version-empty-and-key",
        {"APP_VERSION", "GIT_SHA", "SECRET_KEY"},
        APP_VERSION="",
        GIT_SHA="",
        SECRET_KEY="dummy" * 8,
    ),
    # A reserved character left unencoded in each part, and control characters in every part: the
    # password (or anything else) must never end up as the host, so no database warning can quote it.
    *(
        bad(f"reserved-{char.strip() or 'space'}-in-{part}", {"DATABASE_URL"}, DATABASE_URL=url_with(part, char))
        for part, chars in RESERVED_IN.items()
        for char in chars
    ),
    # Two characters a part, in turn, so that each part and each character is covered.
    *(
        bad(f"{name}-in-{part}", {"DATABASE_URL"}, *NOT_PRINTABLE_SAYS, DATABASE_URL=url_with(part, char))
        for i, part in enumerate(URL_PARTS)
        for name, char in [list(CONTROL_CHARACTERS.items())[(2 * i + k) % len(CONTROL_CHARACTERS)] for k in (0, 1)]
    ),
    # The one refusal of a password that must be percent-encoded says how, with the command.
    bad("password-says-how-to-encode", {"DATABASE_URL"}, *PERCENT_ENCODE_SAYS, DATABASE_URL=url_with("password", "@")),
]


@dataclass(frozen=True)
class Outcome:
    returncode: int | None  # None: still running when the time was up
    stdout: str
    stderr: str


# Valid URLs of apps that start and cannot reach their database: a user and a password holding
# every character that must be percent-encoded (encoded, as they must be), at every log level.
RUN_USER = f"{canary(4)}@{canary(4)}"
RUN_PASSWORD = f"{canary(4)}@{canary(3)}#/{canary(3)}?:%{canary(3)} {canary(3)}"
RUN_SECONDS = 10.0


@dataclass(frozen=True)
class Running:
    id: str
    url: str
    #: The values none of whose four-character windows may appear: as written and as decoded.
    secrets: tuple[str, ...]
    #: What the logs must show, so that the database errors were there to be checked at all.
    logged: tuple[str, ...]


def running_cases(cluster: PostgresCluster) -> list[Running]:
    user, password = quote(RUN_USER, safe=""), quote(RUN_PASSWORD, safe="")
    everything = (f"{user}:{password}", RUN_USER, RUN_PASSWORD)
    return [
        # Nothing listens: every attempt is refused ("connection to server at ... failed").
        Running("refused", url("postgresql", f"{user}:{password}", f"127.0.0.1:{free_port()}/{DB}"), everything, ()),
        # A real server that refuses the user: its error quotes the user name.
        Running(
            "unknown-user",
            url("postgresql", f"{user}:{password}", f"127.0.0.1:{cluster.port}/{PG_DB}"),
            everything,
            ("password authentication failed", "for user ***"),
        ),
        # The real user with a wrong password.
        Running(
            "wrong-password",
            url("postgresql", f"{PG_USER}:{password}", f"127.0.0.1:{cluster.port}/{PG_DB}"),
            (password, RUN_PASSWORD),
            ("password authentication failed",),
        ),
    ]


def run_for_a_while(case: Running) -> Outcome:
    """The app's first seconds, with /readyz asked twice a second; its output once SIGTERM stopped it."""
    server = Server({"APP_ENV": "staging", "LOG_LEVEL": "DEBUG", "DATABASE_URL": case.url, "SECRET_KEY": KEY})
    try:
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                assert server.get("/readyz").status == 503
            time.sleep(0.5)
        assert server.get("/healthz").status == 200
        out, err = server.terminate()
        return Outcome(server.proc.returncode, out, err)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def outcomes(postgres: PostgresCluster) -> Iterator[tuple[dict[str, Outcome], dict[str, Outcome]]]:
    """Every bad environment's run, two at a time (each process spends most of its time importing),
    while the running apps run beside them (they mostly wait)."""

    def run(case: BadEnv) -> Outcome:
        # A port of its own: an environment that is wrongly accepted starts a server, and times out.
        env = {"PORT": str(free_port()), **case.env}
        try:
            result: subprocess.CompletedProcess[str] = run_entry(env, timeout=15)
        except subprocess.TimeoutExpired as exc:
            return Outcome(None, str(exc.stdout), str(exc.stderr))
        return Outcome(result.returncode, result.stdout, result.stderr)

    running = running_cases(postgres)
    with ThreadPoolExecutor(max_workers=len(running)) as apps, ThreadPoolExecutor(max_workers=2) as pool:
        started = apps.map(run_for_a_while, running)
        refused = dict(zip((c.id for c in MATRIX), pool.map(run, MATRIX), strict=True))
        yield refused, dict(zip((c.id for c in running), started, strict=True))


# A scheme the help text names (it is printed whatever the value); everything after it counts.
_PRINTED_SCHEME = re.compile(r"^(postgresql\+psycopg|postgresql|postgres|sqlite)(://+|(?=\+))")
_PRINTED_SCHEMES = {"postgresql+psycopg", "postgresql", "postgres", "sqlite"}


def without_printed_scheme(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    # A printed scheme with a character spliced into it ("postgre\x01sql") is still that word.
    if sep and re.sub(r"[^a-z+]", "", scheme) in _PRINTED_SCHEMES:
        return rest
    return _PRINTED_SCHEME.sub("", value)


def secret_parts(env: dict[str, str]) -> list[str]:
    return [without_printed_scheme(env[name]) for name in SECRET_VARIABLES if name in env]


def leaked_windows(secret: str, output: str) -> list[str]:
    return [
        secret[i : i + LEAK_WINDOW]
        for i in range(len(secret) - LEAK_WINDOW + 1)
        if secret[i : i + LEAK_WINDOW] in output
    ]


def test_the_matrix_is_large_and_its_canaries_distinct() -> None:
    assert len(MATRIX) >= 70
    assert len({case.id for case in MATRIX}) == len(MATRIX)
    # Secrets of every environment, so that a collision of two canaries cannot hide a leak.
    for case in MATRIX:
        for part in secret_parts(case.env):
            others = [v for k, v in case.env.items() if k not in SECRET_VARIABLES]
            assert not any(leaked_windows(part, value) for value in others), case.id


@pytest.mark.parametrize("case", MATRIX, ids=[case.id for case in MATRIX])
def test_bad_environment(case: BadEnv, outcomes: tuple[dict[str, Outcome], dict[str, Outcome]]) -> None:
    outcome = outcomes[0][case.id]
    assert outcome.returncode == EX_CONFIG, outcome.stderr
    assert outcome.stdout == ""
    assert "Traceback" not in outcome.stderr
    named = set(re.findall(r"^  - ([A-Z_]+): ", outcome.stderr, flags=re.MULTILINE))
    assert named == case.bad
    for phrase in case.says:
        assert phrase in outcome.stderr
    for secret in secret_parts(case.env):
        assert leaked_windows(secret, outcome.stdout + outcome.stderr) == []


@pytest.mark.parametrize("case_id", ["refused", "unknown-user", "wrong-password"])
def test_a_running_app_never_logs_its_database_user_or_password(
    case_id: str, postgres: PostgresCluster, outcomes: tuple[dict[str, Outcome], dict[str, Outcome]]
) -> None:
    case = next(c for c in running_cases(postgres) if c.id == case_id)
    outcome = outcomes[1][case_id]
    assert outcome.returncode == 0, outcome.stderr
    output = outcome.stdout + outcome.stderr
    assert "database not reachable (attempt 2," in output
    assert "readiness check failed" in output
    for phrase in case.logged:
        assert phrase in output
    for secret in case.secrets:
        assert leaked_windows(secret, output) == []
