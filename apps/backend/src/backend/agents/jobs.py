"""Task handlers: each takes the task payload and returns a JSON-serialisable result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_SLEEP_SECONDS = 60.0


async def echo(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the payload unchanged."""
    return payload


async def sleep(payload: dict[str, Any]) -> dict[str, float]:
    """Wait ``payload["seconds"]`` (default 1, at most 60) seconds."""
    seconds = payload.get("seconds", 1.0)
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError("payload.seconds must be a number")
    if not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(f"payload.seconds must be between 0 and {MAX_SLEEP_SECONDS:g}")
    await asyncio.sleep(seconds)
    return {"slept": float(seconds)}


async def word_count(payload: dict[str, Any]) -> dict[str, int]:
    """Count the words, lines and characters of ``payload["text"]``."""
    text = payload.get("text")
    if not isinstance(text, str):
        raise ValueError("payload.text must be a string")
    return {"words": len(text.split()), "lines": len(text.splitlines()), "characters": len(text)}


HANDLERS: Mapping[str, Handler] = {"echo": echo, "sleep": sleep, "word_count": word_count}
