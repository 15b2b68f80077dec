"""Archive one WAL file: compress it (in a thread), refuse to overwrite different content, upload
it, and return only once the store has confirmed the complete object.

barman-cloud-wal-archive silently overwrites an existing object (upstream #777) and never looks
for the same segment under another suffix (E-7). We list the segment's variants first (one LIST,
the same cost as a HEAD): identical content already archived is success, different content is a
:class:`~barman_cloud.errors.Conflict` naming both, so a misconfigured second cluster writing to
the same server name cannot destroy the first one's archive. The listing runs while the file is
read and compressed (one hop to a thread), so it adds no latency to an archive call. The file is
compressed as it is read, 1 MiB at a time: a segment in flight holds its compressed form, not
also its 16 MiB of raw bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from barman_cloud.errors import Conflict, Corrupt, InvalidInput, NotFound
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalKind, WalName
from barman_cloud.storage import ObjectInfo, ReadableStore, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveSettings:
    codec: Codec | None = None
    level: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    history_tags: Mapping[str, str] = field(default_factory=dict)
    """Tags of ``.history`` files; the normal tags when empty (barman's rule)."""


@dataclass(frozen=True)
class ArchivedWal:
    name: str
    key: str
    size: int
    """Bytes of the WAL file (uncompressed)."""
    stored_size: int
    already_there: bool = False
    """True when an identical copy was already archived (nothing was uploaded)."""


READ_CHUNK = 1024 * 1024


def _read(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _read_and_compress(path: Path, codec: Codec | None, level: int | None) -> tuple[int, bytes]:
    """In a thread: the file's size and the body to upload (compressed while reading)."""
    with open(path, "rb") as handle:
        if codec is None:
            body = handle.read()
            size = len(body)
        else:
            compressor = codec.compressor(level)
            pieces, size = [], 0
            while chunk := handle.read(READ_CHUNK):
                size += len(chunk)
                pieces.append(compressor.compress(chunk))
            pieces.append(compressor.flush())
            body = b"".join(pieces)
        # Archived: PostgreSQL will not read it again soon, the page cache has better uses.
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return size, body


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sha256_of_file(path: Path) -> str:
    return _sha256(_read(path))


async def read_object(store: ReadableStore, key: str, codec: Codec | None) -> bytes:
    """An object's content, decompressed (in a thread) according to its suffix."""
    raw = b"".join([chunk async for chunk in store.get(key)])
    if codec is None:
        return raw
    try:
        return await asyncio.to_thread(codec.decompress, raw)
    except Exception as error:  # each codec library has its own errors for damaged input
        raise Corrupt(
            f"{key} is corrupt: it cannot be decompressed as {codec.name} ({error})",
            hint="the archived copy is damaged: archive the WAL file again from a server that has it",
        ) from None


async def variants(store: ReadableStore, layout: ServerLayout, wal: WalName) -> dict[str, Codec | None]:
    """Keys holding exactly ``wal`` (any compression suffix), from one listing."""
    found: dict[str, Codec | None] = {}
    async for entry in store.list(f"{layout.wal_dir(wal)}{wal.name}"):
        if isinstance(entry, ObjectInfo):
            parsed = layout.parse_wal_key(entry.key)
            if parsed is not None and parsed[0].name == wal.name:
                found[entry.key] = parsed[1]
    return found


class WalArchiver:
    """Archives WAL files of one server into a store."""

    def __init__(self, store: Store, layout: ServerLayout, settings: ArchiveSettings | None = None) -> None:
        self.store = store
        self.layout = layout
        self.settings = settings or ArchiveSettings()

    async def archive(self, path: Path) -> ArchivedWal:
        wal = WalName.parse(path.name)
        codec = self.settings.codec
        key = self.layout.wal(wal, codec)
        listing = asyncio.ensure_future(variants(self.store, self.layout, wal))
        try:
            size, body = await asyncio.to_thread(_read_and_compress, path, codec, self.settings.level)
        except BaseException as error:
            listing.cancel()
            await asyncio.gather(listing, return_exceptions=True)
            if isinstance(error, FileNotFoundError):
                raise NotFound(f"WAL file {path} does not exist") from None
            if isinstance(error, IsADirectoryError):
                raise InvalidInput(f"{path} is a directory, not a WAL file") from None
            raise
        existing = await listing
        corrupt: list[str] = []
        if existing:
            done, corrupt = await self._compare(path, wal, size, existing)
            if done is not None:
                return done
        tags = self.settings.tags
        if wal.kind is WalKind.HISTORY and self.settings.history_tags:
            tags = self.settings.history_tags
        await self.store.put(key, body, size_hint=len(body), tags=tags or None)
        log.debug("archived WAL", extra={"wal": wal.name, "key": key, "bytes": size, "stored": len(body)})
        if stale := [k for k in corrupt if k != key]:
            await self.store.delete_many(stale)  # a good copy is stored: the damaged one can go
        return ArchivedWal(wal.name, key, size, len(body))

    async def _compare(
        self, path: Path, wal: WalName, size: int, existing: Mapping[str, Codec | None]
    ) -> tuple[ArchivedWal | None, list[str]]:
        """The outcome when an intact archived copy is identical (Conflict when one differs);
        otherwise None and the archived copies that are corrupt: the local file, the only good
        copy, is then stored over them (refusing would block archiving of this segment for good)."""
        # Rare (a retry after a crash, or two clusters on one server name): read the file again.
        digest = await asyncio.to_thread(_sha256_of_file, path)
        corrupt: list[str] = []
        for key, codec in sorted(existing.items()):
            try:
                stored = await read_object(self.store, key, codec)
            except Corrupt as error:
                log.warning(
                    "the archived copy of this WAL is corrupt: archiving the local file again",
                    extra={"wal": wal.name, "key": key, "error": str(error)},
                )
                corrupt.append(key)
                continue
            if await asyncio.to_thread(_sha256, stored) != digest:
                raise Conflict(
                    f"{key} already exists with different content than {path} "
                    f"({len(stored)} bytes archived, {size} bytes local)",
                    hint="another cluster may be archiving to the same destination and server name: "
                    "give each cluster its own serverName; nothing was overwritten",
                )
        intact = sorted(k for k in existing if k not in corrupt)
        if not intact:
            return None, corrupt
        if corrupt:
            await self.store.delete_many(corrupt)  # an identical intact copy stays
        key = intact[0]
        log.info("WAL already archived with identical content", extra={"wal": wal.name, "key": key})
        return ArchivedWal(wal.name, key, size, size, already_there=True), []
