"""Error answers: serialisable whatever the input, no echo of it, the documented shapes."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import FAST_BACKOFF, ClientFactory, SettingsFactory


@pytest.fixture
def raising_client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    """The real app plus a route that fails validation with values JSON cannot carry."""
    app = create_app(make_settings(), backoff=FAST_BACKOFF)

    async def invalid() -> None:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", "\ud800key", 3),
                    "msg": "Value error, bad \udfff",
                    "input": math.nan,
                    "ctx": {"error": ValueError("canary-ctx")},
                },
                {"type": "bytes_type", "loc": ("body",), "msg": "Input should be bytes", "input": b"\xff\xfe"},
            ]
        )

    app.add_api_route("/invalid", invalid)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as client:
        yield client


def test_validation_errors_never_echo_and_always_serialise(raising_client: TestClient) -> None:
    response = raising_client.get("/invalid")
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {"type": "value_error", "loc": ["body", "\\ud800key", 3], "msg": "Value error, bad \\udfff"},
            {"type": "bytes_type", "loc": ["body"], "msg": "Input should be bytes"},
        ]
    }
    assert "canary-ctx" not in response.text


def test_a_body_on_any_route_is_limited(make_client: ClientFactory) -> None:
    client = make_client(MAX_BODY_BYTES="10")
    response = client.request("GET", "/healthz", content=b"x" * 11)
    assert response.status_code == 413
    assert response.json() == {"detail": "Request body too large (limit 10 bytes)"}


@pytest.mark.parametrize(
    ("path", "allow"), [("/healthz", "GET, HEAD"), ("/version", "GET, HEAD"), ("/readyz", "GET, HEAD")]
)
def test_405_on_single_method_paths(client: TestClient, path: str, allow: str) -> None:
    response = client.post(path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


def test_405_on_docs_lists_head(client: TestClient) -> None:
    # Starlette's own routes (the docs pages) answer HEAD as well as GET.
    response = client.delete("/docs")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
