"""Archive one WAL file: compress it (in a thread), refuse to overwrite different content, upload
it, and return only once the store has confirmed the complete object.

barman-cloud-wal-archive silently overwrites an existing object (upstream #777) and never looks
for the same segment under another suffix (E-7). We list the segment's variants first (one LIST,
the same cost as a HEAD): identical content already archived is success, different content is a
:class:`~barman_cloud.errors.Conflict` naming both, so a misconfigured second cluster writing to
the same server name cannot destroy the first one's archive.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from barman_cloud.errors import Conflict, InvalidInput, NotFound
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


def _read(path: Path) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read()
        # Archived: PostgreSQL will not read it again soon, the page cache has better uses.
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return data


async def read_object(store: ReadableStore, key: str, codec: Codec | None) -> bytes:
    """An object's content, decompressed (in a thread) according to its suffix."""
    raw = b"".join([chunk async for chunk in store.get(key)])
    if codec is None:
        return raw
    return await asyncio.to_thread(codec.decompress, raw)


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
        try:
            data = await asyncio.to_thread(_read, path)
        except FileNotFoundError:
            raise NotFound(f"WAL file {path} does not exist") from None
        except IsADirectoryError:
            raise InvalidInput(f"{path} is a directory, not a WAL file") from None
        codec = self.settings.codec
        key = self.layout.wal(wal, codec)
        existing = await variants(self.store, self.layout, wal)
        if existing:
            return await self._compare(path, wal, data, existing)
        body = data if codec is None else await asyncio.to_thread(codec.compress, data, self.settings.level)
        tags = self.settings.tags
        if wal.kind is WalKind.HISTORY and self.settings.history_tags:
            tags = self.settings.history_tags
        await self.store.put(key, body, size_hint=len(body), tags=tags or None)
        log.debug(
            "archived WAL", extra={"wal": wal.name, "key": key, "bytes": len(data), "stored": len(body)}
        )
        return ArchivedWal(wal.name, key, len(data), len(body))

    async def _compare(
        self, path: Path, wal: WalName, data: bytes, existing: Mapping[str, Codec | None]
    ) -> ArchivedWal:
        digest = hashlib.sha256(data).hexdigest()
        for key, codec in sorted(existing.items()):
            stored = await read_object(self.store, key, codec)
            if hashlib.sha256(stored).hexdigest() != digest:
                raise Conflict(
                    f"{key} already exists with different content than {path} "
                    f"({len(stored)} bytes archived, {len(data)} bytes local)",
                    hint="another cluster may be archiving to the same destination and server name: "
                    "give each cluster its own serverName; nothing was overwritten",
                )
        key = sorted(existing)[0]
        log.info("WAL already archived with identical content", extra={"wal": wal.name, "key": key})
        return ArchivedWal(wal.name, key, len(data), len(data), already_there=True)
