"""``api-gateway`` / ``python -m backend.gateway``."""

from __future__ import annotations

from collections.abc import Sequence

from backend.gateway.app import SERVICE, create_app
from backend.server import run_service
from backend.settings import GATEWAY_DEFAULT_PORT

ENV_HELP = """\
  DATABASE_URL    database checked by /ready, e.g. postgresql://user:pass@db:5432/app
  REDIS_URL       Redis checked by /ready, e.g. redis://redis:6379/0
  AGENTS_URL      agents service base URL; enables /api/agents/* and its /ready check
  READY_TIMEOUT   seconds per readiness check (default 1)
  PROXY_TIMEOUT   seconds per forwarded request (default 30)
"""


def main(argv: Sequence[str] | None = None) -> None:
    run_service(
        name=SERVICE,
        description="API gateway: /health, /ready, /version and /api/agents/* forwarding.",
        default_port=GATEWAY_DEFAULT_PORT,
        app_factory=create_app,
        extra_env_help=ENV_HELP,
        argv=argv,
    )


if __name__ == "__main__":
    main()
