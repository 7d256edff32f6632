"""Agents worker: an HTTP task API backed by an in-memory queue and a background loop."""

from backend.agents.app import create_app

__all__ = ["create_app"]
