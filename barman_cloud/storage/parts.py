"""Multipart uploads, shared by the cloud backends: part sizing, re-chunking a byte stream into
parts with bounded memory, and uploading parts in parallel."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

MiB = 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class PartLimits:
    """A provider's multipart limits."""

    min_part: int
    max_part: int
    max_parts: int
    default_part: int = 16 * MiB
    """Part size when the total is unknown; later parts grow so that max_parts is never hit."""


S3_LIMITS = PartLimits(min_part=5 * MiB, max_part=5 * 1024 * MiB, max_parts=10_000)
AZURE_LIMITS = PartLimits(min_part=64 * 1024, max_part=4000 * MiB, max_parts=50_000)
GCS_LIMITS = PartLimits(min_part=256 * 1024, max_part=5 * 1024 * MiB, max_parts=10_000_000)


def part_size_for(size_hint: int | None, limits: PartLimits, fixed: int | None = None) -> int:
    """The part size for an object of ``size_hint`` bytes (None: unknown) within ``limits``."""
    if fixed is not None:
        return max(limits.min_part, min(limits.max_part, fixed))
    if size_hint is None:
        return limits.default_part
    needed = math.ceil(size_hint / limits.max_parts)
    return max(limits.min_part, min(limits.max_part, max(limits.default_part, needed)))


async def parts_of(
    data: AsyncIterable[bytes], part_size: int, limits: PartLimits | None = None
) -> AsyncIterator[bytes]:
    """Re-chunk a byte stream into parts of ``part_size`` bytes (the last may be smaller, and is
    yielded even when empty only if nothing else was). Holds at most one part in memory.

    With ``limits`` and an unknown total, the part size doubles every ``max_parts // 10`` parts
    so that an object of any size fits under ``max_parts``.
    """
    buffer = bytearray()
    produced = 0
    async for chunk in data:
        buffer += chunk
        while len(buffer) >= part_size:
            yield bytes(buffer[:part_size])
            del buffer[:part_size]
            produced += 1
            if limits is not None and produced % max(1, limits.max_parts // 10) == 0:
                part_size = min(limits.max_part, part_size * 2)
    if buffer or produced == 0:
        yield bytes(buffer)


async def upload_parallel(
    parts: AsyncIterable[bytes],
    upload: Callable[[int, bytes], Awaitable[T]],
    max_concurrency: int,
) -> list[T]:
    """Upload parts (numbered from 1) with at most ``max_concurrency`` in flight.

    Returns the results in part order. On the first failure (or cancellation) the other uploads
    are cancelled and the error propagates: the caller aborts the multipart upload.
    """
    results: dict[int, T] = {}
    slots = asyncio.Semaphore(max_concurrency)

    async def one(number: int, body: bytes) -> None:
        try:
            results[number] = await upload(number, body)
        finally:
            slots.release()

    try:
        async with asyncio.TaskGroup() as group:
            number = 0
            async for body in parts:
                await slots.acquire()  # bounds memory: parts are read only when a slot is free
                number += 1
                group.create_task(one(number, body))
    except BaseExceptionGroup as failures:
        # The first real failure is the story; the others are usually its consequences.
        raise failures.exceptions[0] from None
    return [results[n] for n in sorted(results)]
