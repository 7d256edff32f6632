"""Command-line entry shared by both services: parse settings, set up logging, run uvicorn."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
  RELOAD          1: restart when the source changes (development only; default 0)
"""

# What a reloading server's worker process builds (it imports `reloadable_app` afresh).
_FACTORY_ENV = "BACKEND_APP_FACTORY"
_PORT_ENV = "BACKEND_DEFAULT_PORT"
_NAME_ENV = "BACKEND_SERVICE"


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
    if settings.reload:
        # uvicorn re-imports the application in a worker it restarts on every change.
        os.environ[_FACTORY_ENV] = f"{app_factory.__module__}:{app_factory.__name__}"
        os.environ[_PORT_ENV] = str(default_port)
        os.environ[_NAME_ENV] = name
        package = Path(sys.modules[__name__.split(".")[0]].__file__ or ".").parent
        target: FastAPI | str = f"{__name__}:reloadable_app"
        extra: dict[str, object] = {
            "factory": True,
            "reload": True,
            "reload_dirs": [str(package)],
        }
    else:
        target, extra = app_factory(settings), {}
    uvicorn.run(
        target,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=logging.getLevelName(settings.log_level),
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **extra,
    )


def reloadable_app() -> FastAPI:
    """The application of a reloading server's worker, from the factory `run_service` named."""
    module, _, attr = os.environ[_FACTORY_ENV].partition(":")
    factory = getattr(importlib.import_module(module), attr)
    settings = Settings.from_env(os.environ, default_port=int(os.environ[_PORT_ENV]))
    configure_logging(os.environ[_NAME_ENV], settings.log_level)
    return factory(settings)
