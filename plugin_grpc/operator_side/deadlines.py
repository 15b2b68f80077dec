"""Answering within the caller's deadline.

CloudNativePG gives every call to a TCP plugin 30 s (``grpc-timeout``); when it runs out, grpclib
cancels the handler and the operator only sees DEADLINE_EXCEEDED. We stop a little earlier and
fail with a message that says what was slow, so the Cluster's phase tells the user something.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from grpclib.metadata import Deadline

from barman_cloud.errors import Unavailable

MARGIN = 2.0
"""Seconds kept before the caller's deadline to send our own error."""


def time_limit(deadline: Deadline | None, budget: float) -> float:
    """Seconds the work may take: ``budget``, shortened to end ``MARGIN`` before ``deadline``
    (or halfway to it when less than twice the margin is left)."""
    if deadline is None:
        return budget
    remaining = deadline.time_remaining()
    return max(0.0, min(budget, max(remaining - MARGIN, remaining / 2)))


@contextlib.asynccontextmanager
async def within(deadline: Deadline | None, budget: float, what: str) -> AsyncIterator[None]:
    """Run the body under :func:`time_limit`; raise Unavailable naming ``what`` if it runs out."""
    limit = time_limit(deadline, budget)
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise Unavailable(
            f"{what} did not finish within {limit:.1f}s",
            hint="the Kubernetes API server answered too slowly; CloudNativePG retries the reconciliation",
        ) from None
