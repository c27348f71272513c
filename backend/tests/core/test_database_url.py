"""DATABASE_URL read strictly: every part holds what RFC 3986 allows it, or the URL is refused."""

from __future__ import annotations

import subprocess

import pytest

from app.core.database_url import ENCODE_COMMAND, NOT_A_URL, NOT_PRINTABLE, normalise_database_url


def pg(userinfo: str = "app:pw", host: str = "db.internal", port: str = ":5432", rest: str = "/app") -> str:
    """A PostgreSQL URL built from its parts (at run time: the repository holds no credential literal)."""
    return f"postgresql://{userinfo}@{host}{port}{rest}"


# Each reserved character unencoded in each part, and control characters, spaces and non-ASCII anywhere.
RESERVED = ["@", ":", "/", "?", "#", "%", "[", "]"]
BAD = {
    **{f"password-{c}": pg(userinfo=f"app:p{c}w") for c in RESERVED if c != "/"},
    "password-/": pg(userinfo="app:p/w"),
    **{f"user-{c}": pg(userinfo=f"a{c}p:pw") for c in ["@", "/", "?", "#", "%", "[", "]"]},
    **{f"host-{c}": pg(host=f"d{c}b") for c in ["@", "%", "[", "]", "!", "$"]},
    **{f"port-{c}": pg(port=f":54{c}32") for c in ["@", ":", "[", "x"]},
    "database-#": pg(rest="/a#pp"),
    "database-/": pg(rest="/a/pp"),
    "database-%": pg(rest="/a%zpp"),
    "query-#": pg(rest="/app?sslmode=require#x"),
    "query-%": pg(rest="/app?sslmode=%zz"),
    "query-[": pg(rest="/app?a=[1]"),
}
CONTROL = {
    f"{part}-{name}": url
    for name, char in [
        ("nul", "\x01"),
        ("tab", "\t"),
        ("newline", "\n"),
        ("escape", "\x1b"),
        ("del", "\x7f"),
        ("space", " "),
        ("non-ascii", "\u00e9"),
    ]
    for part, url in [
        ("scheme", f"postgres{char}ql://app:pw@db/app"),
        ("user", pg(userinfo=f"a{char}p:pw")),
        ("password", pg(userinfo=f"app:p{char}w")),
        ("host", pg(host=f"d{char}b")),
        ("port", pg(port=f":54{char}32")),
        ("database", pg(rest=f"/a{char}pp")),
        ("query", pg(rest=f"/app?sslmode=re{char}quire")),
    ]
}


@pytest.mark.parametrize("url", BAD.values(), ids=BAD.keys())
def test_a_reserved_character_left_unencoded_in_any_part_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"^(not a valid URL|PostgreSQL URL|the port)") as caught:
        normalise_database_url(url)
    assert str(caught.value) in (
        NOT_A_URL,
        "PostgreSQL URL has no database name",
        "the port must be a number from 1 to 65535",
    )


@pytest.mark.parametrize("url", CONTROL.values(), ids=CONTROL.keys())
def test_control_characters_spaces_and_non_ascii_are_refused_in_every_part(url: str) -> None:
    with pytest.raises(ValueError, match=r"^not a valid URL: it holds a control character") as caught:
        normalise_database_url(url)
    assert str(caught.value) == NOT_PRINTABLE


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        (pg(userinfo="app:p%40s%3As%2Fw%3Fo%23r%25d%20"), ("app", "p@s:s/w?o#r%d ", "db.internal", 5432, "app")),
        (pg(userinfo="app:!$&'()*+,;=-._~"), ("app", "!$&'()*+,;=-._~", "db.internal", 5432, "app")),
        (pg(userinfo="a%40pp:pw", port=""), ("a@pp", "pw", "db.internal", None, "app")),
        (pg(host="[::1]", rest="/app?sslmode=require"), ("app", "pw", "::1", 5432, "app")),
        (pg(userinfo="app", host="", port="", rest="/app?host=/run/postgresql"), ("app", None, None, None, "app")),
        (pg(rest="/my%20db"), ("app", "pw", "db.internal", 5432, "my db")),
    ],
)
def test_percent_encoded_parts_are_read_back_exactly(
    url: str, parts: tuple[str | None, str | None, str | None, int | None, str]
) -> None:
    parsed = normalise_database_url(url)
    assert parsed.drivername == "postgresql+psycopg"
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == parts


@pytest.mark.parametrize("url", ["sqlite:////data/app.db", "sqlite:///./app.db", "sqlite:///relative/app%20x.db"])
def test_sqlite_paths_are_accepted(url: str) -> None:
    assert normalise_database_url(url).drivername == "sqlite"


def test_the_refusal_says_how_to_encode_and_its_command_does_it() -> None:
    assert "@ as %40" in NOT_A_URL
    assert ENCODE_COMMAND in NOT_A_URL
    assert ENCODE_COMMAND in NOT_PRINTABLE
    # Without a terminal, getpass reads the password from stdin (and warns on stderr that it may echo).
    result = subprocess.run(
        ["sh", "-c", ENCODE_COMMAND], input="p@s:s/w?o#r%d \n", capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout == "p%40s%3As%2Fw%3Fo%23r%25d%20\n"
    assert normalise_database_url(pg(userinfo=f"app:{result.stdout.strip()}")).password == "p@s:s/w?o#r%d "
