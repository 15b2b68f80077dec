"""Retries with exponential backoff and full jitter, and a timeout on every attempt.

Backends translate provider errors into engine errors inside the attempt; only
:class:`~barman_cloud.errors.Unavailable` (throttling, 5xx, resets, timeouts) is retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from barman_cloud.errors import Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


def backoff_delay(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 - not cryptographic


async def with_retries(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 5,
    timeout: float | None = None,
    base_delay: float = 0.2,
    max_delay: float = 10.0,
) -> T:
    """Run ``operation`` until it succeeds, fails for good, or ``attempts`` are used up.

    ``timeout`` bounds each attempt; an attempt that times out counts as Unavailable. ``what``
    names the operation and object in logs and in the final error (never a credential).
    """
    for attempt in range(1, attempts + 1):
        try:
            if timeout is None:
                return await operation()
            async with asyncio.timeout(timeout):
                return await operation()
        except (Unavailable, TimeoutError) as error:
            if attempt >= attempts:
                if isinstance(error, TimeoutError):
                    raise Unavailable(f"{what}: no answer within {timeout}s, {attempts} attempts") from error
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.warning(
                "retrying",
                extra={"operation": what, "attempt": attempt, "delay": round(delay, 3), "error": str(error)},
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
