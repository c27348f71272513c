"""DATABASE_URL: parsed strictly (RFC 3986), so that no part of a password can end up as the host.

SQLAlchemy's own parser is lenient: in ``postgresql://app:p@ss@db/app`` it takes ``ss@db`` as the
host, the app starts, and every database warning quotes that "host", part of the password. Here a
URL is split the way RFC 3986 splits it, every part must hold only the characters its grammar
allows, and the result must be what SQLAlchemy reads from the same text; anything else is refused
before the app starts. Every message is fixed text that quotes no part of the URL: all of it may be
secret.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url

#: How to percent-encode a password without it landing in the shell history or the process list.
ENCODE_COMMAND = (
    'python3 -c \'import getpass, urllib.parse; print(urllib.parse.quote(getpass.getpass("password: "), safe=""))\''
)
NOT_A_URL = (
    "not a valid URL; a user name or password holding @ : / ? # % or a space must be percent-encoded "
    f"(@ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25, space as %20), e.g. with `{ENCODE_COMMAND}`"
)
NOT_PRINTABLE = (
    "not a valid URL: it holds a control character, a space or a character outside ASCII; "
    "percent-encode it in the user name, password or database name (e.g. @ as %40, space as %20) "
    f"with `{ENCODE_COMMAND}`"
)

_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg"}
_PCT = r"%[0-9A-Fa-f]{2}"
# RFC 3986 section 2: unreserved, and sub-delims.
_UNRESERVED = r"A-Za-z0-9\-._~"
_SUB_DELIMS = r"!$&'()*+,;="
#: A user name or a password: neither may hold ``:`` (it would move the split) nor ``@``.
_USERINFO_PART = re.compile(rf"(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})*")
#: A host name as PostgreSQL resolves it, or an IPv6 literal in brackets.
_HOST = re.compile(rf"[{_UNRESERVED}]*|\[[0-9A-Fa-f:.]+\]")
_PORT = re.compile(r"[0-9]{1,5}")
_SIGNED_NUMBER = re.compile(r"[-+]?[0-9]+")
_PCHAR = rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})"
_PATH = re.compile(rf"(?:/{_PCHAR}*)*")
_QUERY = re.compile(rf"(?:{_PCHAR}|[/?])*")
# RFC 3986 appendix B, with the authority required: scheme "://" authority path [ "?" query ] [ "#" fragment ].
_SPLIT = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)([^?#]*)(?:\?([^#]*))?(#.*)?", re.DOTALL)


def _check_syntax(raw: str) -> None:
    """Raise ValueError unless ``raw`` is a URL whose parts all hold what their grammar allows."""
    if not raw.isascii() or not raw.isprintable() or " " in raw:
        raise ValueError(NOT_PRINTABLE)
    parts = _SPLIT.fullmatch(raw)
    if parts is None:
        raise ValueError(NOT_A_URL)
    _scheme, authority, path, query, fragment = parts.groups()
    if fragment is not None:  # a "#" left unencoded in a password cuts the URL short
        raise ValueError(NOT_A_URL)
    userinfo, _, hostport = authority.rpartition("@")
    user, _, password = userinfo.partition(":")
    # Neither part may hold "@" or ":": unencoded, either moves where the parts are split.
    if not (_USERINFO_PART.fullmatch(user) and _USERINFO_PART.fullmatch(password)):
        raise ValueError(NOT_A_URL)
    host, port = _split_host_port(hostport)
    if not _HOST.fullmatch(host) or not _PATH.fullmatch(path) or not _QUERY.fullmatch(query or ""):
        raise ValueError(NOT_A_URL)
    if port is not None and not _PORT.fullmatch(port):
        raise ValueError("the port must be a number from 1 to 65535" if _SIGNED_NUMBER.fullmatch(port) else NOT_A_URL)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        host, bracket, rest = hostport.partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(NOT_A_URL)
        return host + bracket, rest[1:] if rest else None
    host, colon, port = hostport.partition(":")
    return host, port if colon else None


def _expected_parts(raw: str) -> tuple[str | None, str | None, str | None, str | None]:
    """User, password, host and database as RFC 3986 reads ``raw`` (already checked)."""
    parts = _SPLIT.fullmatch(raw)
    assert parts is not None  # noqa: S101  # _check_syntax ran first
    authority, path = parts.group(2), parts.group(3)
    userinfo, at, hostport = authority.rpartition("@")
    user, colon, password = userinfo.partition(":")
    host = _split_host_port(hostport)[0].strip("[]")
    return (
        unquote(user) if at else None,
        unquote(password) if colon else None,
        host or None,
        unquote(path[1:]) or None,
    )


def normalise_database_url(raw: str) -> URL:
    """Parse a DATABASE_URL strictly and pin PostgreSQL URLs to the psycopg 3 driver.

    Raises ValueError with a fixed message that holds no part of the URL.
    """
    _check_syntax(raw)
    try:
        url = make_url(raw)
        port = url.port
        driver = url.drivername
    except Exception:  # any parser error: its message would quote the URL
        raise ValueError(NOT_A_URL) from None
    if (url.username, url.password, url.host, url.database) != _expected_parts(raw):
        # SQLAlchemy reads the text otherwise than RFC 3986 does: which of the two is right is a guess.
        raise ValueError(NOT_A_URL)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    if driver in _POSTGRES_DRIVERS:
        if not url.host and "host" not in url.query:
            raise ValueError("PostgreSQL URL has no host")
        if not url.database:
            raise ValueError("PostgreSQL URL has no database name")
        if "/" in url.database:
            raise ValueError(NOT_A_URL)
        return url.set(drivername="postgresql+psycopg")
    if driver == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError("SQLite URL needs a file path, e.g. sqlite:////data/app.db")
        return url
    if driver.startswith(("postgresql+", "sqlite+")):
        raise ValueError("this driver is not installed; use postgresql:// (psycopg 3)")
    raise ValueError("unsupported database scheme; use postgresql:// or sqlite:///")
