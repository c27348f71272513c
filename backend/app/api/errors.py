"""Error responses: their documented shapes and the handlers that produce them.

Every error the app answers is in the OpenAPI document: :data:`COMMON_RESPONSES` (every operation)
and :data:`DATABASE_RESPONSES` (operations that need the database); FastAPI adds 422 itself.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.routing import Match

log = logging.getLogger("app")


class ErrorDetail(BaseModel):
    """The body of every error answer other than 422."""

    detail: str = Field(description="What went wrong, in words; never an echo of the input")


class InternalErrorDetail(ErrorDetail):
    request_id: str = Field(alias="requestId", description="The X-Request-ID of the request, for the logs")


def _error(description: str, model: type[BaseModel] = ErrorDetail) -> dict[str, Any]:
    return {"description": description, "model": model}


#: Answers any operation can give: from the security layer (Host, body size), from request parsing
#: (an unparsable body), or from a bug.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("`Host` not in ALLOWED_HOSTS, or a JSON body that cannot be decoded (malformed JSON is a 422)"),
    413: _error("Request body larger than MAX_BODY_BYTES"),
    500: _error("Unexpected error; the body names the request id and nothing else", InternalErrorDetail),
}
#: Answers of operations that use the database.
DATABASE_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: _error("The database is unavailable; retry later"),
}


def _printable(text: str) -> str:
    # A lone surrogate (from a JSON "\ud800" escape) cannot be encoded as UTF-8; show it escaped.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


async def _invalid_request(_request: Request, exc: Exception) -> JSONResponse:
    """422 listing each problem (type, location, message) without echoing the input.

    FastAPI's own handler returns each rejected value (``input``) and pydantic's context
    (``ctx``): a NaN, a lone surrogate or undecodable bytes there make the error itself
    unserialisable (a 500), and echoing input reflects whatever the client sent, secrets included.
    """
    if not isinstance(exc, RequestValidationError):  # registered for this type only
        raise exc
    detail = [
        {
            "type": error["type"],
            "loc": [_printable(part) if isinstance(part, str) else part for part in error["loc"]],
            "msg": _printable(error["msg"]),
        }
        for error in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts for this request's path (FastAPI has one route per method)."""
    methods: set[str] = set()
    # iter_route_contexts sees the routes of included routers, as the OpenAPI document does.
    for route in iter_route_contexts(request.app.routes):
        if route.methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")  # answered for every GET route (see SecurityMiddleware)
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for this type only
        raise exc
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path.
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)
    return await http_exception_handler(request, exc)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # Losing the database mid-request is an outage of a dependency, not a bug: 503, not 500.
    log.warning("database error on %s: %s", request.url.path, type(exc).__name__)
    return JSONResponse({"detail": "database unavailable"}, status_code=503)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    # Connection-level failures only; an integrity or programming error stays a 500 (it is a bug).
    for error in (OperationalError, InterfaceError, PoolTimeoutError):
        app.add_exception_handler(error, _database_unavailable)
