"""The OpenAPI document is the contract: bounds, every error answer, links between operations."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

ERRORS_OF_EVERY_OPERATION = {"400", "413", "500"}
#: (method, path) -> (operationId, every status the operation can answer)
OPERATIONS = {
    ("get", "/healthz"): ("healthz", {"200"}),
    ("get", "/readyz"): ("readyz", {"200", "503"}),
    ("get", "/version"): ("version", {"200"}),
    ("get", "/hardening"): ("hardening", {"200"}),
    ("post", "/api/v1/items"): ("create_item", {"201", "422", "503"}),
    ("get", "/api/v1/items"): ("list_items", {"200", "422", "503"}),
    ("get", "/api/v1/items/{item_id}"): ("get_item", {"200", "404", "422", "503"}),
    ("delete", "/api/v1/items/{item_id}"): ("delete_item", {"204", "404", "422", "503"}),
}
MAX_ID = 2**31 - 1


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    """The document a development instance serves (production serves none)."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def operation(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = document["paths"][path][method]
    return op


def parameter(document: dict[str, Any], method: str, path: str, name: str) -> dict[str, Any]:
    params = {p["name"]: p for p in operation(document, method, path)["parameters"]}
    schema: dict[str, Any] = params[name]["schema"]
    return schema


def test_every_operation_and_every_answer_is_documented(document: dict[str, Any]) -> None:
    documented = {
        (method, path): (op["operationId"], set(op["responses"]))
        for path, item in document["paths"].items()
        for method, op in item.items()
    }
    assert documented == {
        key: (operation_id, statuses | ERRORS_OF_EVERY_OPERATION)
        for key, (operation_id, statuses) in OPERATIONS.items()
    }


@pytest.mark.parametrize("method", ["get", "delete"])
def test_item_id_bounds(document: dict[str, Any], method: str) -> None:
    schema = parameter(document, method, "/api/v1/items/{item_id}", "item_id")
    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, MAX_ID)


def test_page_bounds(document: dict[str, Any]) -> None:
    limit = parameter(document, "get", "/api/v1/items", "limit")
    offset = parameter(document, "get", "/api/v1/items", "offset")
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    assert (offset["minimum"], offset["maximum"], offset["default"]) == (0, MAX_ID, 0)


def test_error_bodies_have_a_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for (method, path), (_, statuses) in OPERATIONS.items():
        responses = operation(document, method, path)["responses"]
        for status in (statuses | ERRORS_OF_EVERY_OPERATION) - {"200", "201", "204"}:
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas, (method, path, status)
    assert schemas["ErrorDetail"]["required"] == ["detail"]
    assert schemas["InternalErrorDetail"]["required"] == ["detail", "requestId"]


def test_a_created_item_links_to_its_get_and_delete(document: dict[str, Any]) -> None:
    links = operation(document, "post", "/api/v1/items")["responses"]["201"]["links"]
    assert links == {
        "GetItem": {"operationId": "get_item", "parameters": {"item_id": "$response.body#/id"}},
        "DeleteItem": {"operationId": "delete_item", "parameters": {"item_id": "$response.body#/id"}},
    }


def test_version_documents_release(document: dict[str, Any]) -> None:
    ref = operation(document, "get", "/version")["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(schema["required"]) == {"version", "gitSha", "python", "release"}
    assert "container's short id" in schema["properties"]["release"]["description"]
