"""The items API, on PostgreSQL and on SQLite."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ClientFactory


@pytest.fixture(params=["postgresql", "sqlite"])
def items_client(request: pytest.FixtureRequest, make_client: ClientFactory) -> TestClient:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        client = make_client(APP_ENV="staging", DATABASE_URL=url)
    else:
        client = make_client(APP_ENV="staging")
    assert client.get("/readyz").status_code == 200
    return client


def test_create_get_delete(items_client: TestClient) -> None:
    created = items_client.post("/api/v1/items", json={"name": "  widget ", "description": "a thing"})
    assert created.status_code == 201
    item = created.json()
    assert set(item) == {"id", "name", "description", "created_at"}
    assert item["name"] == "widget"
    assert item["description"] == "a thing"
    assert isinstance(item["id"], int)

    fetched = items_client.get(f"/api/v1/items/{item['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == item

    deleted = items_client.delete(f"/api/v1/items/{item['id']}")
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert items_client.get(f"/api/v1/items/{item['id']}").status_code == 404
    assert items_client.delete(f"/api/v1/items/{item['id']}").status_code == 404


def test_missing_item_is_404(items_client: TestClient) -> None:
    response = items_client.get("/api/v1/items/999999")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


def test_list_paginates_in_id_order(items_client: TestClient) -> None:
    ids = [items_client.post("/api/v1/items", json={"name": f"item-{n}"}).json()["id"] for n in range(5)]
    first = items_client.get("/api/v1/items", params={"limit": 2})
    assert first.status_code == 200
    assert first.json()["total"] == 5
    assert first.json()["limit"] == 2
    assert first.json()["offset"] == 0
    assert [i["id"] for i in first.json()["items"]] == ids[:2]
    rest = items_client.get("/api/v1/items", params={"limit": 2, "offset": 4}).json()
    assert [i["id"] for i in rest["items"]] == ids[4:]
    assert [i["name"] for i in items_client.get("/api/v1/items").json()["items"]] == [f"item-{n}" for n in range(5)]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "many"}], ids=["zero", "over", "neg", "text"]
)
def test_list_bounds(items_client: TestClient, params: dict[str, int | str]) -> None:
    response = items_client.get("/api/v1/items", params=params)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 201},
        {"name": "ok", "extra": 1},
        {"name": "ok", "description": "d" * 2001},
    ],
    ids=["no-name", "empty", "blank", "long-name", "extra-field", "long-description"],
)
def test_create_validation(items_client: TestClient, body: dict[str, object]) -> None:
    response = items_client.post("/api/v1/items", json=body)
    assert response.status_code == 422
    assert items_client.get("/api/v1/items").json()["total"] == 0


def test_non_integer_id_is_422(items_client: TestClient) -> None:
    assert items_client.get("/api/v1/items/abc").status_code == 422


# Bad inputs that each once gave a 500.
MAX_ID = 2**31 - 1


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize(
    ("item_id", "problem"),
    [
        (str(MAX_ID + 1), "less_than_equal"),
        (str(2**63), "less_than_equal"),
        ("9" * 40, "less_than_equal"),
        ("0", "greater_than_equal"),
    ],
)
def test_ids_out_of_range_are_422(items_client: TestClient, method: str, item_id: str, problem: str) -> None:
    response = items_client.request(method, f"/api/v1/items/{item_id}")
    assert response.status_code == 422
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [(problem, ["path", "item_id"])]


# One item has one URL: every other spelling of its id (or of a page's numbers) is refused like 1e2.
NOT_PLAIN_DECIMAL = ["01", "+1", "-1", "%201", "1%20", "%091", "1.0", "1e0", "1_0", "0x1", "\u0661"]


def test_a_number_in_the_url_in_any_other_spelling_than_plain_digits_is_422(items_client: TestClient) -> None:
    assert items_client.post("/api/v1/items", json={"name": "one"}).json()["id"] == 1
    for value in NOT_PLAIN_DECIMAL:
        for method in ("GET", "DELETE"):
            response = items_client.request(method, f"/api/v1/items/{value}")
            assert response.status_code == 422, (method, value)
            assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("int_parsing", ["path", "item_id"])]
        for name in ("limit", "offset"):
            response = items_client.get(f"/api/v1/items?{name}={value}")
            assert response.status_code == 422, (name, value)
            assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("int_parsing", ["query", name])]
    assert items_client.get("/api/v1/items/1").status_code == 200


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_largest_id_is_a_404_not_an_error(items_client: TestClient, method: str) -> None:
    response = items_client.request(method, f"/api/v1/items/{MAX_ID}")
    assert response.status_code == 404
    assert response.json() == {"detail": "Item not found"}


@pytest.mark.parametrize("offset", [MAX_ID + 1, 2**63, 2**64, 10**30])
def test_offset_out_of_range_is_422(items_client: TestClient, offset: int) -> None:
    response = items_client.get("/api/v1/items", params={"offset": offset})
    assert response.status_code == 422
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("less_than_equal", ["query", "offset"])]


def test_largest_offset_is_an_empty_page(items_client: TestClient) -> None:
    items_client.post("/api/v1/items", json={"name": "one"})
    response = items_client.get("/api/v1/items", params={"offset": MAX_ID, "limit": 100})
    assert response.status_code == 200
    assert response.json() == {"items": [], "total": 1, "limit": 100, "offset": MAX_ID}


NUL = chr(0)
NUL_PROBLEM = "Value error, must not contain the NUL character (U+0000): the database cannot store it"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": f"a{NUL}b"}, "name"),
        ({"name": NUL}, "name"),
        ({"name": "ok", "description": f"tail{NUL}"}, "description"),
    ],
    ids=["name", "only-nul", "description"],
)
def test_nul_in_text_is_422_saying_why(items_client: TestClient, body: dict[str, str], field: str) -> None:
    response = items_client.post("/api/v1/items", json=body)
    assert response.status_code == 422
    assert response.json() == {"detail": [{"type": "value_error", "loc": ["body", field], "msg": NUL_PROBLEM}]}
    assert items_client.get("/api/v1/items").json()["total"] == 0


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"name": NaN}', ("string_type", ["body", "name"])),
        (b'{"name": "ok", "description": Infinity}', ("string_type", ["body", "description"])),
        (b'{"name": "\\ud800"}', ("string_unicode", ["body", "name"])),
        (b'{"name": "ok", "description": "x\\udfff"}', ("string_unicode", ["body", "description"])),
    ],
    ids=["nan", "infinity", "lone-high-surrogate", "lone-low-surrogate"],
)
def test_values_json_allows_but_text_cannot_hold_are_422(
    items_client: TestClient, raw: bytes, problem: tuple[str, list[str]]
) -> None:
    response = items_client.post("/api/v1/items", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["type"], e["loc"]) for e in errors] == [problem]
    # No echo of the input: it is what could not be serialised in the first place.
    assert all(set(e) == {"type", "loc", "msg"} for e in errors)
    assert items_client.get("/api/v1/items").json()["total"] == 0


def test_a_surrogate_in_a_field_name_is_422(items_client: TestClient) -> None:
    raw = b'{"name": "ok", "\\ud800x": 1}'
    response = items_client.post("/api/v1/items", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("string_unicode", ["body"])]


def test_astral_and_unusual_characters_are_stored(items_client: TestClient) -> None:
    name = "\U0001f600 tab\tnbsp\xa0 \u2028 \u0001 end"
    created = items_client.post("/api/v1/items", json={"name": f"  {name}\u3000", "description": "\x1f"})
    assert created.status_code == 201, created.text
    fetched = items_client.get(f"/api/v1/items/{created.json()['id']}").json()
    assert fetched["name"] == name
    # Python's str.strip() removes the unit separator (U+001F) too: it counts as whitespace.
    assert fetched["description"] == ""


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [("application/json", b"\x1c\xa9_\xef"), ("application/json", b'{"name": "\xff"}')],
    ids=["not-utf8", "invalid-utf8-inside-a-string"],
)
def test_unparsable_body_is_400(items_client: TestClient, content_type: str, raw: bytes) -> None:
    response = items_client.post("/api/v1/items", content=raw, headers={"content-type": content_type})
    assert response.status_code == 400
    assert response.json() == {"detail": "There was an error parsing the body"}


def test_non_json_body_is_422_without_echo(items_client: TestClient) -> None:
    response = items_client.post("/api/v1/items", content=b"\xff\xfe", headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "Input should be a valid dictionary or object to extract fields from",
            }
        ]
    }


@pytest.mark.parametrize(
    ("path", "methods"),
    [("/api/v1/items", "GET, HEAD, POST"), ("/api/v1/items/1", "DELETE, GET, HEAD")],
)
@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
def test_405_allow_lists_every_method_of_the_path(
    items_client: TestClient, path: str, methods: str, method: str
) -> None:
    response = items_client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == methods
    assert response.json() == {"detail": "Method Not Allowed"}
