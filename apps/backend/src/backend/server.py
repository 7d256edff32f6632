"""Command-line entry shared by both services: parse settings, set up logging, run uvicorn."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from backend.logs import configure_logging
from backend.settings import Settings

# Leave room inside Docker's default 10 s stop timeout for lifespan shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 8

COMMON_ENV_HELP = """\
  HOST            interface to bind (default 0.0.0.0)
  PORT            port to listen on (default {port})
  LOG_LEVEL       DEBUG, INFO, WARNING or ERROR (default INFO)
  APP_VERSION     reported by /version (default "dev")
  APP_REVISION    reported by /version (default "unknown")
  APP_BUILD_DATE  reported by /version (default "unknown")
"""


def run_service(
    *,
    name: str,
    description: str,
    default_port: int,
    app_factory: Callable[[Settings], FastAPI],
    extra_env_help: str = "",
    argv: Sequence[str] | None = None,
) -> None:
    """Run ``app_factory(settings)`` under uvicorn until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog=name,
        description=description,
        epilog="environment variables:\n"
        + COMMON_ENV_HELP.format(port=default_port)
        + extra_env_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)

    try:
        settings = Settings.from_env(os.environ, default_port=default_port)
    except ValueError as exc:
        sys.exit(f"{name}: invalid configuration: {exc}")

    configure_logging(name, settings.log_level)
    uvicorn.run(
        app_factory(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=logging.getLevelName(settings.log_level),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
