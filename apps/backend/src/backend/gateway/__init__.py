"""API gateway: health, readiness, version and forwarding to the agents service."""

from backend.gateway.app import create_app

__all__ = ["create_app"]
