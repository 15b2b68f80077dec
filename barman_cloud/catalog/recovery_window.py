"""The recovery window of a server (``ObjectStore.status.serverRecoveryWindow``), from the catalog.

Upstream (CloudNativePG's ``pkg/catalog``) takes the end time of the oldest backup that has begin
and end times as the first recoverability point, whatever its status, and whether or not the WAL
needed to make it consistent is still archived. We go one step further:

- *last successful backup*: end time of the newest DONE backup (by ID);
- *last failed backup*: end time (else begin time) of the newest FAILED backup;
- *first recoverability point*: end time of the oldest DONE backup whose WAL from ``begin_wal`` to
  ``end_wal`` is in the archive (a complete segment or its ``.partial``): a backup whose WAL was
  removed (by a bucket lifecycle rule, by hand) can no longer be restored to any point, so it does
  not count. The check lists the ``wals/<TLI><LOG>/`` directories those ranges fall in (cached),
  so it costs one listing per such directory at most, a constant per backup.

Guards (E-9): backups lacking times or WAL names are skipped, never a crash.
"""

from __future__ import annotations

import logging
from datetime import datetime

from barman_cloud.catalog.listing import FAILED, Backup, Catalog
from barman_cloud.config.object_store import RecoveryWindow
from barman_cloud.errors import InvalidInput
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalKind, WalName, parse_lsn, segment_name
from barman_cloud.storage import ObjectInfo, ReadableStore

log = logging.getLogger(__name__)


def last_successful_backup(catalog: Catalog) -> Backup | None:
    return next((b for b in reversed(list(catalog)) if b.is_completed), None)


def last_failed_backup_time(catalog: Catalog) -> datetime | None:
    for backup in reversed(list(catalog)):
        if backup.status == FAILED and (backup.info.end_time or backup.info.begin_time):
            return backup.info.end_time or backup.info.begin_time
    return None


def needed_segments(backup: Backup) -> list[str] | None:
    """The segments from ``begin_wal`` to the one holding ``end_xlog``; None when unknown."""
    info = backup.info
    if not info.begin_wal or not info.end_wal:
        return None
    try:
        begin = WalName.parse(info.begin_wal)
        end = WalName.parse(info.end_wal)
        size = info.segment_size
        first = begin.segment_number(size)
        last = end.segment_number(size)
        if info.end_xlog and parse_lsn(info.end_xlog) % size == 0 and last > first:
            last -= 1  # E-26: end_wal is computed without the "minus one byte" rule
    except InvalidInput:
        return None
    if begin.kind is not WalKind.SEGMENT or end.kind is not WalKind.SEGMENT or last < first:
        return None
    if begin.timeline != end.timeline:  # a switch during the backup: both ends must be there
        return [begin.name, end.name]
    return [segment_name(begin.timeline, n, size) for n in range(first, last + 1)]


class WalPresence:
    """Which segments are archived, one listing per ``wals/<TLI><LOG>/`` directory, cached."""

    def __init__(self, store: ReadableStore, layout: ServerLayout) -> None:
        self.store = store
        self.layout = layout
        self._dirs: dict[str, set[str]] = {}
        self.listings = 0

    async def _names(self, hash_dir: str) -> set[str]:
        if hash_dir not in self._dirs:
            names: set[str] = set()
            self.listings += 1
            async for entry in self.store.list(f"{self.layout.wals}{hash_dir}/", delimiter="/"):
                if isinstance(entry, ObjectInfo) and (parsed := self.layout.parse_wal_key(entry.key)):
                    wal = parsed[0]
                    if wal.kind in (WalKind.SEGMENT, WalKind.PARTIAL):
                        names.add(wal.segment)
            self._dirs[hash_dir] = names
        return self._dirs[hash_dir]

    async def has_all(self, segments: list[str]) -> bool:
        for name in segments:
            if name not in await self._names(name[:16]):
                return False
        return True


async def first_recoverability_point(
    store: ReadableStore, layout: ServerLayout, catalog: Catalog, *, check_wal: bool = True
) -> datetime | None:
    presence = WalPresence(store, layout)
    for backup in catalog:
        if not backup.is_completed:
            continue
        if check_wal:
            segments = needed_segments(backup)
            if segments is None or not await presence.has_all(segments):
                log.info(
                    "backup not recoverable: WAL missing from the archive",
                    extra={"backup_id": backup.backup_id, "begin_wal": backup.info.begin_wal},
                )
                continue
        return backup.info.end_time
    return None


async def recovery_window(
    store: ReadableStore, layout: ServerLayout, catalog: Catalog, *, check_wal: bool = True
) -> RecoveryWindow:
    last = last_successful_backup(catalog)
    return RecoveryWindow(
        first_recoverability_point=await first_recoverability_point(
            store, layout, catalog, check_wal=check_wal
        ),
        last_successful_backup_time=last.info.end_time if last else None,
        last_failed_backup_time=last_failed_backup_time(catalog),
    )
