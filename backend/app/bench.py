"""Benchmark entry: ``python -m app.bench --middleware off|on [--metrics off|on]``.

Runs the same server configuration as ``python -m app`` but can leave out the security, logging
and metrics middleware (or the metrics alone), so one benchmark run can measure their overhead. It
refuses to run with APP_ENV=production: the shipped entry point has no such switch.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from app.core.config import EX_CONFIG, get_settings, load_settings_or_explain
from app.server import serve

if TYPE_CHECKING:
    from fastapi import FastAPI

# The factories import the app only when uvicorn calls them: the metrics port must be set up before
# prometheus_client is imported (app/metrics_server.py).


def create_bare_app() -> FastAPI:
    """Factory for uvicorn: the app without its middleware."""
    from app.main import create_app  # noqa: PLC0415

    return create_app(get_settings(), middleware=False)


def create_app_without_metrics() -> FastAPI:
    """Factory for uvicorn: the app with its middleware but no metrics."""
    from app.main import create_app  # noqa: PLC0415

    return create_app(get_settings(), metrics=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__)
    parser.add_argument("--middleware", choices=("on", "off"), required=True)
    parser.add_argument("--metrics", choices=("on", "off"), default="on", help="with --middleware on (default on)")
    args = parser.parse_args(argv)
    settings = load_settings_or_explain()
    if settings is None:
        return EX_CONFIG
    if settings.is_production:
        print("app.bench refuses APP_ENV=production; use python -m app", file=sys.stderr)
        return EX_CONFIG
    if args.middleware == "off":
        factory = "app.bench:create_bare_app"
    elif args.metrics == "off":
        factory = "app.bench:create_app_without_metrics"
    else:
        factory = "app.main:create_app_from_env"
    return serve(settings, factory)


if __name__ == "__main__":
    sys.exit(main())
