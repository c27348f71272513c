"""The item schema: what the text fields accept is exactly what the OpenAPI document says."""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.models import DESCRIPTION_MAX_LENGTH, NAME_MAX_LENGTH, WHITESPACE, ItemCreate

# Characters at the edges of the contract, mixed into otherwise arbitrary text.
EDGE_CHARACTERS = [*WHITESPACE, chr(0), "\u200b", "\ufeff", "\x7f", "a", "\U0001f600"]
TEXT = st.text(st.one_of(st.sampled_from(EDGE_CHARACTERS), st.characters(codec="utf-8")), max_size=40)


def field_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one ItemCreate field as the OpenAPI document publishes it."""
    prop: dict[str, Any] = ItemCreate.model_json_schema()["properties"][name]
    if "anyOf" in prop:  # the optional description: string or null
        prop = next(p for p in prop["anyOf"] if p.get("type") == "string")
    return {key: prop[key] for key in ("type", "minLength", "maxLength", "pattern") if key in prop}


def accepted(**fields: str) -> bool:
    try:
        ItemCreate(**fields)
    except ValidationError:
        return False
    return True


def test_whitespace_is_every_character_str_strip_removes() -> None:
    assert [c for c in map(chr, range(0x110000)) if c.isspace()] == list(WHITESPACE)


def test_documented_constraints() -> None:
    name, description = field_schema("name"), field_schema("description")
    assert (name["type"], name["minLength"], name["maxLength"]) == ("string", 1, NAME_MAX_LENGTH)
    assert (description["type"], description["maxLength"]) == ("string", DESCRIPTION_MAX_LENGTH)
    assert "minLength" not in description


@settings(max_examples=400, derandomize=True, deadline=None)
@given(text=TEXT, padding=st.sampled_from(["", " ", "\u3000\t", "x" * (NAME_MAX_LENGTH - 2)]))
def test_name_accepted_exactly_when_the_documented_schema_matches(text: str, padding: str) -> None:
    value = text + padding
    schema = field_schema("name")
    # Python's re is what schemathesis generates from; jsonschema-rs reads the pattern as ECMA-262.
    by_re = schema["minLength"] <= len(value) <= schema["maxLength"] and re.search(schema["pattern"], value)
    assert bool(by_re) == jsonschema_rs.validator_for(schema).is_valid(value)
    assert accepted(name=value) == bool(by_re), repr(value)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(text=TEXT)
def test_description_accepted_exactly_when_the_documented_schema_matches(text: str) -> None:
    schema = field_schema("description")
    by_re = len(text) <= schema["maxLength"] and re.search(schema["pattern"], text)
    assert bool(by_re) == jsonschema_rs.validator_for(schema).is_valid(text)
    assert accepted(name="n", description=text) == bool(by_re), repr(text)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "a\x00"}, "must not contain the NUL character (U+0000): the database cannot store it"),
        ({"name": "a", "description": "\x00"}, "must not contain the NUL character (U+0000)"),
        ({"name": "a\ud800"}, "Input should be a valid string, unable to parse raw data as a unicode string"),
        ({"name": "a", "description": "\udfff"}, "unable to parse raw data as a unicode string"),
        ({"name": " \u2003\u3000"}, "must contain a character other than whitespace"),
    ],
)
def test_refusals_say_why(fields: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ItemCreate(**fields)
    assert message in str(caught.value)


def test_lengths_count_the_text_as_sent_and_whitespace_is_stripped_after() -> None:
    assert ItemCreate(name="  x  ", description=" d ").model_dump() == {"name": "x", "description": "d"}
    assert accepted(name="x" * NAME_MAX_LENGTH)
    assert not accepted(name="x" * (NAME_MAX_LENGTH - 1) + "  ")
