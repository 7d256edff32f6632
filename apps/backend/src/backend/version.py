"""Build metadata reported by ``/version``."""

from __future__ import annotations

from backend.settings import Settings


def version_info(settings: Settings) -> dict[str, str]:
    return {
        "version": settings.version,
        "revision": settings.revision,
        "build_date": settings.build_date,
    }
