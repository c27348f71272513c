"""Benchmark entry: ``python -m app.bench --middleware off|on``.

Runs the same server configuration as ``python -m app`` but can leave out the security and
logging middleware, so one benchmark run can measure their overhead. It refuses to run with
APP_ENV=production: the shipped entry point has no such switch.
"""

from __future__ import annotations

import argparse
import sys

from fastapi import FastAPI

from app.core.config import EX_CONFIG, get_settings, load_settings_or_explain
from app.main import create_app
from app.server import serve


def create_bare_app() -> FastAPI:
    """Factory for uvicorn: the app without its middleware."""
    return create_app(get_settings(), middleware=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__)
    parser.add_argument("--middleware", choices=("on", "off"), required=True)
    args = parser.parse_args(argv)
    settings = load_settings_or_explain()
    if settings is None:
        return EX_CONFIG
    if settings.is_production:
        print("app.bench refuses APP_ENV=production; use python -m app", file=sys.stderr)
        return EX_CONFIG
    factory = "app.main:create_app_from_env" if args.middleware == "on" else "app.bench:create_bare_app"
    return serve(settings, factory)


if __name__ == "__main__":
    sys.exit(main())
