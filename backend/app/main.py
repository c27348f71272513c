"""The application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CollectorRegistry
from starlette.middleware.cors import CORSMiddleware

from app.api.errors import COMMON_RESPONSES, install_error_handlers
from app.api.routes import health, items
from app.core.config import Settings, get_settings
from app.core.db import Backoff, Database
from app.core.logging import configure_logging
from app.core.metrics import Metrics, sampling
from app.core.middleware import SecurityMiddleware, use_request_metrics

log = logging.getLogger("app")

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def _operation_id(route: APIRoute) -> str:
    # The function's name (create_item, get_item, ...): stable ids that OpenAPI links can name.
    return route.name


def create_app(
    settings: Settings,
    *,
    middleware: bool = True,
    metrics: bool = True,
    backoff: Backoff | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app for ``settings``.

    ``middleware=False`` leaves out the security, request-context, metrics and CORS middleware, and
    ``metrics=False`` the metrics alone; they exist only so the benchmark can measure their overhead
    (see ``app.bench``) and are not reachable through ``python -m app``. The metrics go to the
    multiprocess files that the metrics port serves (app/metrics_server.py), and to ``registry``
    too when one is given (a test reading them in its own process).
    """
    configure_logging(settings)
    recorded = Metrics(registry=registry) if middleware and metrics else None
    database = Database(
        settings.database_url, backoff=backoff, on_checked=None if recorded is None else recorded.readiness_checked
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "starting",
            extra={"event": {"env": settings.APP_ENV, "version": settings.APP_VERSION, "gitSha": settings.GIT_SHA}},
        )
        database.start()
        try:
            async with sampling(recorded, database):
                yield
        finally:
            await database.stop()
            log.info("stopped")

    docs = not settings.is_production
    app = FastAPI(
        title="backend",
        version=settings.APP_VERSION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
        responses=COMMON_RESPONSES,
        generate_unique_id_function=_operation_id,
        # No OpenTelemetry collector is part of this service; exported spans and logs would carry
        # exception messages out of the redacted log path, and the hooks cost time per request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = settings
    app.state.database = database
    app.state.metrics = recorded
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(items.router)
    if recorded is not None:
        recorded.use_routes(app.routes)
    use_request_metrics(recorded)

    if middleware:
        # add_middleware wraps: the last added runs first. CORS sits inside the security layer,
        # so its preflight answers and rejections carry the security headers too.
        if settings.CORS_ORIGINS:
            app.add_middleware(
                CORSMiddleware,
                allow_origins=settings.CORS_ORIGINS,
                allow_methods=["GET", "POST", "DELETE"],
                allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
                expose_headers=["X-Request-ID"],
                max_age=600,
            )
        app.add_middleware(
            SecurityMiddleware,
            allowed_hosts=settings.ALLOWED_HOSTS,
            max_body_bytes=settings.MAX_BODY_BYTES,
            hsts=settings.hsts,
            docs_paths=DOCS_PATHS if docs else frozenset(),
            metrics=recorded,
        )
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn (``app.main:create_app_from_env``): settings from the environment."""
    return create_app(get_settings())
