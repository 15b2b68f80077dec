"""The tar archives of one backup, recognised by barman's rule (format 1.4, ``get_backup_files``).

One delimited listing of ``base/<ID>/``. Bases looked for: ``data`` and the decimal OID of every
tablespace in backup.info. A key belongs to base ``B`` if it starts with ``base/<ID>/B`` and the
next character is ``.`` (the main archive) or ``_`` (an extra part); its extension must be exactly
``tar``, ``tar.gz``, ``tar.bz2``, ``tar.snappy`` or ``tar.lz4`` (anything else is ignored with a
warning, E-4). Anything else under ``base/<ID>/`` is invisible to restore and delete.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from barman_cloud.format import compression
from barman_cloud.format.backup_info import BackupInfo
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import ObjectInfo, ReadableStore

log = logging.getLogger(__name__)

DATA = "data"
EXTENSIONS: dict[str, Codec | None] = {
    "tar": None,
    "tar.gz": compression.GZIP,
    "tar.bz2": compression.BZIP2,
    "tar.snappy": compression.SNAPPY,
    "tar.lz4": compression.LZ4,
}


@dataclass(frozen=True)
class ArchiveObject:
    key: str
    base: str
    """``data`` or a tablespace OID in decimal."""
    main: bool
    """The first part (``B.tar...``); extra parts are ``B_NNNN.tar...``."""
    codec: Codec | None
    size: int


@dataclass(frozen=True)
class BackupArchives:
    backup_id: str
    objects: tuple[ArchiveObject, ...]
    """Data archives first, then tablespaces by OID; main part, then extra parts by key."""
    missing: tuple[str, ...] = ()
    """Bases without a main archive (a restore is impossible, a delete proceeds)."""
    duplicates: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Bases with more than one main archive (different suffixes), by base."""

    @property
    def keys(self) -> list[str]:
        return [o.key for o in self.objects]

    @property
    def total_size(self) -> int:
        return sum(o.size for o in self.objects)


def archive_bases(info: BackupInfo) -> list[str]:
    return [DATA, *(str(oid) for oid in sorted(t[1] for t in info.tablespaces or ()))]


def _classify(rest: str, bases: list[str]) -> tuple[str, bool, str] | None:
    """(base, main, extension) of an object name relative to ``base/<ID>/``, None if no base."""
    for base in bases:
        if not rest.startswith(base) or len(rest) == len(base) or rest[len(base)] not in "._":
            continue
        suffix = rest[len(base) :]
        if suffix[0] == "_":
            return base, False, suffix.split(".", 1)[-1]
        return base, True, suffix[1:]
    return None


async def list_archives(
    store: ReadableStore, layout: ServerLayout, backup_id: str, info: BackupInfo
) -> BackupArchives:
    directory = layout.backup_dir(backup_id)
    bases = archive_bases(info)
    found: list[ArchiveObject] = []
    async for entry in store.list(directory, delimiter="/"):
        if not isinstance(entry, ObjectInfo):
            continue
        classified = _classify(entry.key[len(directory) :], bases)
        if classified is None:
            continue
        base, main, extension = classified
        if extension not in EXTENSIONS:
            log.warning("skipping an object with an unknown extension", extra={"key": entry.key})
            continue
        found.append(ArchiveObject(entry.key, base, main, EXTENSIONS[extension], entry.size))
    order = {base: index for index, base in enumerate(bases)}
    found.sort(key=lambda o: (order[o.base], not o.main, o.key))
    mains: dict[str, list[str]] = {}
    for obj in found:
        if obj.main:
            mains.setdefault(obj.base, []).append(obj.key)
    missing = tuple(base for base in bases if base not in mains)
    duplicates = {base: tuple(keys) for base, keys in mains.items() if len(keys) > 1}
    return BackupArchives(backup_id, tuple(found), missing, duplicates)
