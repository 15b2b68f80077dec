"""Helpers for the backends' HTTP sessions."""

from __future__ import annotations

import asyncio


async def settle_closed_connections() -> None:
    """Let connections closed a moment ago finish closing (their transports complete on the next
    loop iterations), so that none outlives a short-lived event loop and warns when collected."""
    for _ in range(3):
        await asyncio.sleep(0)
