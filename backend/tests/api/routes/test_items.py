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
