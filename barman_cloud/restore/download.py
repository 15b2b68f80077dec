"""Stream an archive object in order, with parallel ranged GETs when the store supports them, and
hand its chunks to a worker thread.

A large object is read as consecutive ranges of ``part_size`` bytes, at most ``window`` of them
fetched or buffered ahead per object, and at most ``limit`` GETs in flight for the whole restore:
memory stays below ``archives in parallel x window x part_size`` whatever the backup size, and one
big ``data.tar`` downloads over several connections. Stores without ranged reads (or small objects)
are streamed with one GET.

The bridge to the thread is an ``asyncio.Queue``: the event loop fills it, the thread takes from
it with ``run_coroutine_threadsafe``; :meth:`Feed.abort` unblocks a waiting thread so that a failed
or cancelled restore never leaves a worker behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from barman_cloud.errors import Unavailable
from barman_cloud.storage import Feature, ReadableStore

DEFAULT_PART_SIZE = 8 * 1024 * 1024


class RestoreAborted(Exception):
    """Raised in a worker thread whose restore failed or was cancelled elsewhere."""


def supports_ranges(store: ReadableStore) -> bool:
    features: frozenset[Feature] = getattr(store, "features", frozenset())
    return Feature.RANGED_GET in features


async def object_chunks(
    store: ReadableStore,
    key: str,
    size: int,
    *,
    limit: asyncio.Semaphore,
    part_size: int = DEFAULT_PART_SIZE,
    window: int = 4,
) -> AsyncGenerator[bytes, None]:
    """The object's bytes in order (ranged and parallel when possible)."""
    if size <= part_size or not supports_ranges(store):
        async with limit, _closing(store.get(key)) as chunks:
            async for chunk in chunks:
                yield chunk
        return

    async def fetch(start: int, end: int) -> bytes:
        async with limit, _closing(store.get(key, start=start, end=end)) as chunks:
            data = b"".join([chunk async for chunk in chunks])
        if len(data) != end - start:
            raise Unavailable(
                f"short read of {key} bytes {start}-{end}: got {len(data)} bytes",
                hint="the object changed or the connection was cut; retry the restore",
            )
        return data

    starts = iter(range(0, size, part_size))
    pending: deque[asyncio.Task[bytes]] = deque()

    def schedule() -> None:
        start = next(starts, None)
        if start is not None:
            pending.append(asyncio.ensure_future(fetch(start, min(start + part_size, size))))

    cancelled = False
    try:
        for _ in range(max(1, window)):
            schedule()
        while pending:
            data = await pending.popleft()
            schedule()
            yield data
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        # Closed early (the extraction failed): let the few reads in flight end, so that every
        # stream is closed by its own code; only a cancellation cuts them short.
        if cancelled:
            for task in pending:
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


@contextlib.asynccontextmanager
async def _closing(chunks: AsyncIterator[bytes]) -> AsyncGenerator[AsyncIterator[bytes], None]:
    """Close a store's stream even when abandoned halfway (its connection or file is released)."""
    try:
        yield chunks
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()


class Feed:
    """What the worker thread calls to get the next chunk (None at the end)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 4) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=max(1, depth))
        self._lock = threading.Lock()
        self._pending: concurrent.futures.Future[bytes | BaseException | None] | None = None
        self._aborted = False
        self._stopped = False

    def __call__(self) -> bytes | None:
        with self._lock:
            if self._aborted:
                raise RestoreAborted("the restore was stopped")
            future = asyncio.run_coroutine_threadsafe(self.queue.get(), self.loop)
            self._pending = future
        try:
            item = future.result()
        except concurrent.futures.CancelledError:
            raise RestoreAborted("the restore was stopped") from None
        finally:
            with self._lock:
                self._pending = None
        if isinstance(item, BaseException):
            raise item
        return item

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            if self._pending is not None:
                self._pending.cancel()

    def stop(self) -> None:
        """No one reads any more: the pump ends after its current step (call on the loop)."""
        self._stopped = True
        while not self.queue.empty():
            self.queue.get_nowait()

    async def _put(self, item: bytes | BaseException | None) -> None:
        if not self._stopped:
            await self.queue.put(item)

    async def pump(self, chunks: AsyncGenerator[bytes, None]) -> int:
        """Move ``chunks`` into the queue; errors are queued for the thread to raise."""
        total = 0
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if self._stopped:
                        break
                    if chunk:
                        total += len(chunk)
                        await self._put(chunk)
            await self._put(None)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            await self._put(error)
        return total
