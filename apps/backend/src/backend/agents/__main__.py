"""``agents`` / ``python -m backend.agents``."""

from __future__ import annotations

from collections.abc import Sequence

from backend.agents.app import SERVICE, create_app
from backend.server import run_service
from backend.settings import AGENTS_DEFAULT_PORT


def main(argv: Sequence[str] | None = None) -> None:
    run_service(
        name=SERVICE,
        description="Agents worker: POST /tasks, GET /tasks/{id}, GET /health.",
        default_port=AGENTS_DEFAULT_PORT,
        app_factory=create_app,
        argv=argv,
    )


if __name__ == "__main__":
    main()
