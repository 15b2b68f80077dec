"""Stream an archive object in order into a bounded pipe that worker threads read.

Download strategy. Each object is read with **one streaming GET**, its chunks pushed into a
:class:`Pipe` with a deep read-ahead (``READ_AHEAD`` bytes): the connection keeps receiving while
the threads behind it decompress and write, and parallelism comes from restoring several archives
at once (``data`` parts, tablespaces), each with its own stream and threads. Ranged parallel GETs
are used only for objects of at least ``RANGED_MIN_SIZE`` (4 GiB) on stores that support ranges:

- a single S3/GCS/Azure stream delivers tens to a hundred MB/s on a real cloud, less than what
  the decompression and extraction threads absorb, so for a very large single object (barman's
  default ``--max-archive-size`` is 100 GB) several connections pay;
- below that, ranges cost one request per ``RANGE_SIZE`` bytes and buy nothing over a stream, and
  some servers read the whole object for every ranged GET (moto does: a 1 GiB object fetched in
  8 MiB ranges made it read 128 GiB, 89 s instead of 1.3 s; see bench/README.md).

Memory stays below ``archives in parallel x (READ_AHEAD + window x RANGE_SIZE)`` plus the
decompressed pipes, whatever the backup size.

The pipes are plain thread-safe queues bounded in bytes: the event loop puts without blocking a
thread (it awaits a future when the pipe is full, woken by the reader once half of it was read),
threads block on a condition. :meth:`Pipe.abort` wakes every side so that a failed or cancelled
restore never leaves a worker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

from barman_cloud.errors import Unavailable
from barman_cloud.storage import Feature, ReadableStore

READ_AHEAD = 32 * 1024 * 1024
"""Compressed bytes read ahead of the decompression, per archive."""
RANGE_SIZE = 16 * 1024 * 1024
RANGED_MIN_SIZE = 4 * 1024 * 1024 * 1024
"""Objects at least this large are read with parallel ranged GETs (see the module docstring)."""


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
    ranged_min_size: int | None = RANGED_MIN_SIZE,
    part_size: int = RANGE_SIZE,
    window: int = 4,
) -> AsyncGenerator[bytes, None]:
    """The object's bytes in order: one streaming GET, or parallel ranges for huge objects.

    ``limit`` bounds the GETs in flight for the whole restore; ``ranged_min_size`` None never
    uses ranges.
    """
    ranged = ranged_min_size is not None and size >= ranged_min_size and size > part_size
    if not ranged or not supports_ranges(store):
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


Chunk = bytes | memoryview


class Pipe:
    """A queue of byte chunks bounded in bytes, from one producer to one consumer thread.

    The consumer calls :meth:`get` (None at the end; the producer's error is raised there). The
    producer is a thread (:meth:`put`, :meth:`close`) or a coroutine on the event loop
    (:meth:`aput`, :meth:`pump`). :meth:`abort` makes every waiting or later call raise
    :class:`RestoreAborted` and drops what is queued.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        # A waiting consumer is woken once this much is queued (or at the end), not for every
        # small network chunk: fewer thread switches, which cost most when the CPUs are busy.
        self.wake_at = max(1, min(self.limit // 4, 2 * 1024 * 1024))
        self._waiting = False
        self._items: deque[Chunk | BaseException | None] = deque()
        self._bytes = 0
        self._cond = threading.Condition(threading.Lock())
        self._aborted = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- consumer (a worker thread) ----------------------------------------------------------------

    def get(self) -> Chunk | None:
        with self._cond:
            while not self._items and not self._aborted:
                self._waiting = True
                self._cond.wait()
                self._waiting = False
            if self._aborted:
                raise RestoreAborted("the restore was stopped")
            item = self._items[0]
            if item is None or isinstance(item, BaseException):
                if item is None:  # the end (or the error) stays where it is
                    return None
                raise item
            self._items.popleft()
            self._bytes -= len(item)
            if self._bytes <= self.limit // 2:
                self._cond.notify_all()  # a producer thread waiting for room
                self._wake_loop()
            return item

    def _wake_loop(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_set_done, waiter)

    # -- producer -------------------------------------------------------------------------------

    def put(self, chunk: Chunk) -> None:
        """Queue ``chunk`` from a thread, waiting while the pipe is full."""
        with self._cond:
            while self._bytes >= self.limit and not self._aborted:
                self._cond.wait()
            if self._aborted:
                raise RestoreAborted("the restore was stopped")
            self._items.append(chunk)
            self._bytes += len(chunk)
            self._wake_consumer()

    def _wake_consumer(self) -> None:
        if self._waiting and self._bytes >= self.wake_at:
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        """The end of the data (or the error the consumer raises at this point)."""
        with self._cond:
            if not self._closed and not self._aborted:
                self._closed = True
                self._items.append(error)
                self._cond.notify_all()

    async def aput(self, chunk: Chunk) -> None:
        """Queue ``chunk`` from the event loop, awaiting (never blocking) while the pipe is full."""
        while True:
            with self._cond:
                if self._aborted:
                    raise RestoreAborted("the restore was stopped")
                if self._bytes < self.limit:
                    self._items.append(chunk)
                    self._bytes += len(chunk)
                    self._wake_consumer()
                    return
                self._loop = asyncio.get_running_loop()
                waiter = self._waiter = self._loop.create_future()
            await waiter

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
            self._wake_loop()

    @property
    def aborted(self) -> bool:
        return self._aborted

    async def pump(self, chunks: AsyncGenerator[bytes, None]) -> int:
        """Move ``chunks`` into the pipe; returns the bytes moved. A download error is handed to
        the consumer; an aborted pipe stops the download (its stream is closed cleanly)."""
        total = 0
        try:
            async with contextlib.aclosing(chunks):
                async for chunk in chunks:
                    if chunk:
                        total += len(chunk)
                        await self.aput(chunk)
            self.close()
        except RestoreAborted:
            pass
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.close(error)
        return total


def _set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
