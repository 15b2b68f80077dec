"""The archives of one backup, produced and uploaded as a pipeline.

An archive base (``data`` or a tablespace OID) is one tar stream, cut into parts past the maximum
archive size (``data.tar``, ``data_0001.tar``...). Each part is one object holding one complete
tar stream under one compression stream, uploaded by :meth:`Store.put` from an async byte stream
while it is being produced:

    walk + read (worker thread, a chunk at a time)
      -> compress (the backup's pool of ``jobs`` threads, several chunks at once, joined in order)
      -> Store.put (multipart, parts in parallel inside the backend)

Queues between the stages are bounded, so memory does not depend on the size of the cluster:
per archive in flight about ``(jobs + 2)`` chunks, plus what the store buffers for its parts. A
failure anywhere cancels the whole pipeline through the caller's task group; cancelled uploads
are aborted by the store.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

from barman_cloud.backup.encoders import WINDOW, Buffer, Encoder, Piece
from barman_cloud.backup.tarstream import NewPart, TarStream
from barman_cloud.backup.walk import Member
from barman_cloud.storage import Store

T = TypeVar("T")


class _Done:
    pass


DONE = _Done()


class Stepper(Generic[T]):
    """Advances a blocking iterator one item at a time in a worker thread.

    ``aclose`` waits for a step still running in its thread (cancelling the caller cannot stop
    it) before closing the iterator, so no file stays open and no thread reads after the backup."""

    def __init__(self, iterator: Iterator[T], executor: Executor) -> None:
        self._iterator = iterator
        self._executor = executor
        self._running: concurrent.futures.Future[T | _Done] | None = None

    def _step(self) -> T | _Done:
        return next(self._iterator, DONE)

    async def next(self) -> T | _Done:
        self._running = self._executor.submit(self._step)
        result = await asyncio.wrap_future(self._running)
        self._running = None
        return result

    async def aclose(self) -> None:
        running, self._running = self._running, None
        if running is not None and not running.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait([asyncio.wrap_future(running)])
            if not running.done():
                return  # cancelled again while waiting: the thread finishes on its own
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()


@dataclass
class PartRecord:
    """One archive object, for copy_stats and the result."""

    key: str
    started: float
    finished: float | None = None
    size: int = 0
    """Bytes uploaded (compressed)."""
    tar_bytes: int = 0
    sha256: str | None = None
    """SHA-256 of the stored object, from the store (for the checksum manifest)."""


@dataclass
class Counters:
    """Progress of the whole backup (updated on the event loop, read by the progress logger)."""

    tar_bytes: int = 0
    """Tar bytes compressed and handed to the store."""
    uploaded: int = 0
    """Compressed bytes handed to the store."""
    parts: list[PartRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Pipeline:
    """What every archive of one backup shares."""

    store: Store
    group: asyncio.TaskGroup
    compression_pool: Executor
    read_pool: Executor
    encoder: Callable[[], Encoder]
    jobs: int
    chunk_size: int
    read_ahead: int
    """Bytes each part being uploaded may hold ahead of the store (see :class:`_PartUpload`)."""
    max_archive_size: int
    size_hint: int | None
    """What the store is told about each object's size (see :meth:`Store.put`)."""
    tags: Mapping[str, str]
    counters: Counters


class _PartUpload:
    """One archive object: chunks in, compressed stream out to ``Store.put``.

    Chunks are compressed as they come (the pool runs ``jobs`` at a time) and their results queue
    up in order. What the part holds, chunks being compressed plus compressed bytes not yet taken
    by the store, is capped at ``pipeline.read_ahead`` bytes: enough for the next multipart part to
    be ready when an upload slot frees (the store reads its next part only then), so reading and
    compressing go on while the slots upload, and memory stays bounded."""

    def __init__(self, pipeline: Pipeline, key: str) -> None:
        self.pipeline = pipeline
        self.encoder = pipeline.encoder()
        self.record = PartRecord(key, started=time.monotonic())
        pipeline.counters.parts.append(self.record)
        # Compressed pieces (or chunks for a sequential encoder) in stream order; None ends it.
        self._queue: collections.deque[asyncio.Future[Piece] | tuple[Buffer, bytes] | None] = (
            collections.deque()
        )
        self._changed = asyncio.Event()
        self._held = 0
        """Bytes the part holds: chunks not yet compressed, compressed pieces not yet uploaded."""
        self._previous = b""
        self.compressed_in = 0
        """Tar bytes already compressed."""
        self.compressed_out = 0
        """Compressed bytes produced from them."""
        self.task = pipeline.group.create_task(self._upload(), name=f"upload {key}")

    async def _wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
            self._changed.clear()
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()

    async def feed(self, chunk: Buffer) -> None:
        await self._wait(lambda: self._held < self.pipeline.read_ahead)
        previous = self._previous
        self._previous = bytes(chunk[-WINDOW:])
        self._held += len(chunk)
        if self.encoder.parallel:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(
                self.pipeline.compression_pool, self.encoder.encode, chunk, previous
            )
            future.add_done_callback(partial(self._compressed, len(chunk)))
            self._queue.append(future)
        else:
            self._queue.append((chunk, previous))
        self._notify()

    def _compressed(self, size: int, future: asyncio.Future[Piece]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._held += len(future.result().data) - size
            self._notify()

    async def finish(self) -> None:
        self._queue.append(None)
        self._notify()

    async def _upload(self) -> None:
        record = self.record
        try:
            info = await self.pipeline.store.put(
                record.key,
                _PartStream(self),
                size_hint=self.pipeline.size_hint,
                tags=dict(self.pipeline.tags) or None,
            )
        finally:
            for item in self._queue:
                if isinstance(item, asyncio.Future):
                    item.cancel()
            self._queue.clear()
        record.finished = time.monotonic()
        record.size = info.size
        record.sha256 = info.sha256

    async def next_piece(self) -> bytes | None:
        """The next compressed bytes in stream order (None at the end of the part)."""
        await self._wait(lambda: bool(self._queue))
        item = self._queue.popleft()
        if item is None:
            return None
        if isinstance(item, asyncio.Future):
            piece = await item
            self._held -= len(piece.data)
        else:
            loop = asyncio.get_running_loop()
            piece = await loop.run_in_executor(self.pipeline.compression_pool, self.encoder.encode, *item)
            self._held -= piece.size
        self._notify()
        data = self.encoder.join(piece)
        self.compressed_in += piece.size
        self.compressed_out += len(data)
        self.record.tar_bytes += piece.size
        counters = self.pipeline.counters
        counters.tar_bytes += piece.size
        counters.uploaded += len(data)
        return data

    def estimate(self, tar_bytes: int, ratio: float) -> int:
        """Compressed size of this part once its first ``tar_bytes`` are compressed: what is
        compressed so far, plus the rest at ``ratio``."""
        return self.compressed_out + int((tar_bytes - self.compressed_in) * ratio)


class _PartStream:
    """The byte stream ``Store.put`` reads for one part: head, pieces in order, end."""

    def __init__(self, part: _PartUpload) -> None:
        self._part = part
        self._state = 0  # 0: head not sent, 1: pieces, 2: finished

    def __aiter__(self) -> _PartStream:
        return self

    async def __anext__(self) -> bytes:
        part = self._part
        while True:
            if self._state == 0:
                self._state = 1
                head = part.encoder.head()
                if head:
                    part.compressed_out += len(head)
                    part.pipeline.counters.uploaded += len(head)
                    return head
            elif self._state == 1:
                data = await part.next_piece()
                if data is None:
                    self._state = 2
                    end = part.encoder.end()
                    part.compressed_out += len(end)
                    part.pipeline.counters.uploaded += len(end)
                    if end:
                        return end
                elif data:
                    return data
            else:
                raise StopAsyncIteration


class ArchiveWriter:
    """One archive base: its tar stream, its parts, their uploads."""

    def __init__(self, pipeline: Pipeline, base_name: str, key_for_part: Callable[[int], str]) -> None:
        self.pipeline = pipeline
        self.base_name = base_name
        self._key_for_part = key_for_part
        self.tar = TarStream(self._should_split, pipeline.chunk_size)
        self.parts: list[_PartUpload] = []
        self._current: _PartUpload | None = None

    def _should_split(self) -> bool:
        """Called from the tar thread before each member: is the current part past the limit?

        barman compares the compressed bytes written so far with the limit; here compression runs
        behind reading, so the tar bytes not compressed yet count at the ratio seen so far in this
        archive (1 before any piece is compressed)."""
        compressed_in = sum(part.compressed_in for part in self.parts)
        compressed_out = sum(part.compressed_out for part in self.parts)
        ratio = compressed_out / compressed_in if compressed_in else 1.0
        part = self._current
        offset = self.tar.part_offset
        estimate = part.estimate(offset, ratio) if part is not None else int(offset * ratio)
        return estimate > self.pipeline.max_archive_size

    def _open_part(self) -> _PartUpload:
        part = _PartUpload(self.pipeline, self._key_for_part(len(self.parts)))
        self.parts.append(part)
        self._current = part
        return part

    async def _feed(self, chunk: Buffer) -> None:
        part = self._current or self._open_part()
        await part.feed(chunk)

    async def _end_part(self, *, closed: bool = False) -> None:
        """Finish the current part; ``closed`` when the tar stream already wrote its end."""
        part = self._current or self._open_part()
        if not closed:
            await part.feed(self.tar.end_of_archive())
        await part.finish()
        self._current = None

    async def add(self, members: Iterable[Member]) -> None:
        """Read and feed ``members`` (the walk runs in a worker thread); returns once every byte
        was read from disk and queued for compression."""
        stepper = Stepper(self.tar.chunks(members), self.pipeline.read_pool)
        try:
            while not isinstance(item := await stepper.next(), _Done):
                if isinstance(item, NewPart):
                    await self._end_part(closed=True)
                else:
                    await self._feed(item)
        finally:
            await stepper.aclose()

    async def add_file(self, name: str, data: bytes, uid: int, gid: int) -> None:
        """An in-memory member (``backup_label``), after the same size check as a file."""
        if self.tar.part_offset and self._should_split():
            await self._end_part()
        chunks = await asyncio.to_thread(lambda: list(self.tar.add_bytes(name, data, uid, gid)))
        for chunk in chunks:
            await self._feed(chunk)

    async def close(self) -> None:
        """Close the last part (an empty archive still gets one, valid and empty, object)."""
        await self._end_part()

    async def wait(self) -> list[PartRecord]:
        """Wait until every part is uploaded (the task group raises the first failure)."""
        for part in self.parts:
            await part.task
        return [part.record for part in self.parts]
