"""Container health probe: exit 0 when the service in this container answers /health.

Used by the image's HEALTHCHECK. It probes `$PORT` when set, otherwise the api-gateway's and
the agents worker's default ports, so one HEALTHCHECK serves both entrypoint modes.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORTS = ("8000", "8001")


def probe(port: str, timeout: float = 2.0) -> bool:
    """Return True when http://127.0.0.1:PORT/health answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    ports = (os.environ["PORT"],) if os.environ.get("PORT") else DEFAULT_PORTS
    return 0 if any(probe(port) for port in ports) else 1


if __name__ == "__main__":
    sys.exit(main())
