"""SQLAlchemy 2 typed models and the API's pydantic schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAME_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 2000
#: The largest id the ``items.id`` column (PostgreSQL ``integer``) can hold.
MAX_ITEM_ID = 2**31 - 1

#: Every character ``str.strip()`` removes (``str.isspace``), in code point order.
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _class(chars: str) -> str:
    # \uXXXX escapes read the same in Python's re, ECMA-262 (JSON Schema) and Rust's regex.
    return "".join(f"\\u{ord(c):04x}" for c in chars)


# The documented contract of the text fields, as JSON Schema patterns. Unpaired surrogates are
# refused as well, but left out of the pattern: several JSON Schema validators cannot compile a
# pattern that names them, and a JSON text carrying them is not valid Unicode to begin with.
_STORABLE = f"[^{_class(chr(0))}]"
_STORABLE_NON_SPACE = f"[^{_class(chr(0) + WHITESPACE)}]"
DESCRIPTION_PATTERN = f"^{_STORABLE}*$"
NAME_PATTERN = f"^{_STORABLE}*{_STORABLE_NON_SPACE}{_STORABLE}*$"


def _storable(value: str) -> str:
    """Refuse what the database cannot store (PostgreSQL: no NUL in text; UTF-8 only), then strip."""
    if "\x00" in value:
        raise ValueError("must not contain the NUL character (U+0000): the database cannot store it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode: an unpaired surrogate (U+D800 to U+DFFF) cannot be stored") from None
    return value.strip()


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must contain a character other than whitespace")
    return value


# Lengths count the text as sent; surrounding whitespace is stripped after validation.
Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=NAME_MAX_LENGTH,
        description=(
            f"1 to {NAME_MAX_LENGTH} characters with at least one that is not whitespace; surrounding "
            "whitespace is removed. NUL (U+0000) and unpaired surrogates are refused: the database cannot store them."
        ),
        examples=["widget"],
        json_schema_extra={"pattern": NAME_PATTERN},
    ),
    AfterValidator(_storable),
    AfterValidator(_not_blank),
]
Description = Annotated[
    str,
    Field(
        max_length=DESCRIPTION_MAX_LENGTH,
        description=(
            f"Up to {DESCRIPTION_MAX_LENGTH} characters; surrounding whitespace is removed. NUL (U+0000) "
            "and unpaired surrogates are refused: the database cannot store them."
        ),
        examples=["A thing with a purpose"],
        json_schema_extra={"pattern": DESCRIPTION_PATTERN},
    ),
    AfterValidator(_storable),
]


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


class Item(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int = Field(ge=1, le=MAX_ITEM_ID)
    name: str
    description: str | None
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        # SQLite stores no time zone; every stored time is UTC, so say so on the way out.
        return value if value.tzinfo else value.replace(tzinfo=UTC)


class ItemsPage(BaseModel):
    items: list[ItemPublic]
    total: int
    limit: int
    offset: int
