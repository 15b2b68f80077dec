"""Restore one WAL file from the archive, atomically.

Choice of the object (better than barman, E-6): the complete segment in any compression beats its
``.partial``; ``.backup`` files are never served for a segment; a requested segment that exists only
as ``.partial`` is served from it (needed right after a promotion). The suffix found last time is
tried first with a plain GET, so the usual cost of a restore is one request, not a LIST and a GET;
when a LIST is needed, one listing answers for the segment and its ``.partial``.

The destination is written to a temporary name in its directory, fsynced and renamed: PostgreSQL
never sees a partial file, and a failed restore leaves nothing behind. The directory itself is not
fsynced: a rename lost in a crash leaves no file (asked for again), never a torn one. The body is
decompressed and written in a thread, a few MiB per hop rather than one hop per network chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from barman_cloud.errors import NotFound
from barman_cloud.format.compression import Codec, Decompressor
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalKind, WalName
from barman_cloud.storage import ObjectInfo, ReadableStore

log = logging.getLogger(__name__)
_UNKNOWN = object()
WRITE_BATCH = 4 * 1024 * 1024
"""Bytes of the object gathered before one decompress-and-write hop to a thread."""


@dataclass(frozen=True)
class RestoredWal:
    name: str
    key: str
    size: int
    from_partial: bool = False


def _choose(
    wal: WalName, found: dict[str, Codec | None], partials: dict[str, Codec | None]
) -> tuple[str, Codec | None]:
    if found:
        key = sorted(found)[0]
        return key, found[key]
    if partials and wal.kind is WalKind.SEGMENT:
        key = sorted(partials)[0]
        return key, partials[key]
    raise NotFound(f"WAL {wal.name} is not in the archive")


def _write(handle: BinaryIO, decompressor: Decompressor | None, chunks: list[bytes]) -> int:
    size = 0
    for chunk in chunks:
        data = decompressor.decompress(chunk) if decompressor else chunk
        handle.write(data)
        size += len(data)
    return size


def _finish(
    handle: BinaryIO, decompressor: Decompressor | None, chunks: list[bytes], temporary: Path, target: Path
) -> int:
    size = _write(handle, decompressor, chunks)
    tail = decompressor.flush() if decompressor else b""
    handle.write(tail)
    handle.flush()
    os.fsync(handle.fileno())  # complete on disk before it can be seen under its name
    handle.close()
    os.replace(temporary, target)
    return size + len(tail)


class WalRestorer:
    """Fetches WAL files of one server from a store."""

    def __init__(self, store: ReadableStore, layout: ServerLayout) -> None:
        self.store = store
        self.layout = layout
        self._codec: object = _UNKNOWN  # the suffix segments were found with last time

    async def locate(self, wal: WalName) -> tuple[str, Codec | None, bool]:
        """The key and codec to read for ``wal``, and whether it is a ``.partial`` stand-in."""
        # One listing of the name as a prefix holds its variants and its .partial ones.
        found: dict[str, Codec | None] = {}
        partials: dict[str, Codec | None] = {}
        partial_name = f"{wal.name}.partial"
        async for entry in self.store.list(f"{self.layout.wal_dir(wal)}{wal.name}"):
            if isinstance(entry, ObjectInfo):
                parsed = self.layout.parse_wal_key(entry.key)
                if parsed is not None and parsed[0].name == wal.name:
                    found[entry.key] = parsed[1]
                elif parsed is not None and parsed[0].name == partial_name and wal.kind is WalKind.SEGMENT:
                    partials[entry.key] = parsed[1]
        key, codec = _choose(wal, found, partials)
        return key, codec, key not in found

    async def restore(self, name: str, destination: Path) -> RestoredWal:
        """Write ``name`` to ``destination``; NotFound when the archive does not have it."""
        wal = WalName.parse(name)
        if wal.kind is WalKind.SEGMENT and self._codec is not _UNKNOWN:
            guess: Codec | None = self._codec  # type: ignore[assignment]
            key = self.layout.wal(wal, guess)
            try:
                size = await self._download(key, guess, destination)
            except NotFound:
                pass
            else:
                return RestoredWal(wal.name, key, size)
        key, codec, from_partial = await self.locate(wal)
        size = await self._download(key, codec, destination)
        if wal.kind is WalKind.SEGMENT and not from_partial:
            self._codec = codec
        if from_partial:
            log.info("restored a segment from its .partial file", extra={"wal": wal.name, "key": key})
        return RestoredWal(wal.name, key, size, from_partial)

    async def _download(self, key: str, codec: Codec | None, destination: Path) -> int:
        temporary = destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}.tmp")
        chunks = self.store.get(key)
        try:
            first = await anext(chunks)  # NotFound surfaces here, before any file is created
        except StopAsyncIteration:
            first = b""
        decompressor = codec.decompressor() if codec else None
        handle = await asyncio.to_thread(open, temporary, "wb")
        size = 0
        try:
            batch, batched = [first], len(first)
            async for chunk in chunks:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= WRITE_BATCH:
                    size += await asyncio.to_thread(_write, handle, decompressor, batch)
                    batch, batched = [], 0
            size += await asyncio.to_thread(_finish, handle, decompressor, batch, temporary, destination)
        except BaseException:
            handle.close()
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return size
