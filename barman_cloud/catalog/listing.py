"""Every backup of a server: one delimited listing of ``base/`` and a read of each ``backup.info``.

Like barman's ``CloudBackupCatalog.get_backup_list``: every "directory" under ``base/`` is a
candidate whatever its name; one without ``backup.info`` is not a backup (a pre-3.19 backup still
running, a leftover) and is skipped silently; one whose ``backup.info`` cannot be read or parsed is
*unreadable*: reported in :attr:`Catalog.unreadable`, never fatal for the catalog (barman >= 3.15
aborts the whole command on an unknown key, E-1: we keep the other fields and warn). Deleting
anything while a backup is unreadable is refused by the retention code (E-12), as barman does.

Ordering is the lexicographic order of the backup ID, as everywhere in barman.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from barman_cloud.errors import BarmanCloudError, NotFound
from barman_cloud.format.backup_info import BackupInfo, parse_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import CommonPrefix, ReadableStore, read_all

log = logging.getLogger(__name__)

DONE = "DONE"
STARTED = "STARTED"
FAILED = "FAILED"
USABLE = frozenset({"DONE", "WAITING_FOR_WALS"})
"""Statuses barman's WAL cleanup treats as "copy done" (``BackupInfo.STATUS_COPY_DONE``)."""

DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True)
class Backup:
    """One readable backup: its ID (the directory's name) and its backup.info."""

    backup_id: str
    info: BackupInfo

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def is_done(self) -> bool:
        return self.info.status == DONE

    @property
    def is_completed(self) -> bool:
        """Restorable: status DONE with both times (CloudNativePG requires begin and end time)."""
        return self.is_done and self.info.begin_time is not None and self.info.end_time is not None

    @property
    def end_time(self) -> datetime | None:
        return self.info.end_time


@dataclass(frozen=True)
class Unreadable:
    """A ``base/<ID>/backup.info`` that exists but could not be read or parsed."""

    backup_id: str
    reason: str


@dataclass
class Catalog:
    """The backups of one server, ordered by ID."""

    layout: ServerLayout
    backups: dict[str, Backup]
    unreadable: list[Unreadable] = field(default_factory=list)
    keeps: dict[str, str] | None = None
    """Keep annotation targets by backup ID, when loaded (see :mod:`.keep`)."""
    without_info: list[str] = field(default_factory=list)
    """Directories under ``base/`` without a backup.info: no backups (see the module docstring)."""

    def __post_init__(self) -> None:
        self.backups = dict(sorted(self.backups.items()))

    def __iter__(self) -> Iterator[Backup]:
        return iter(self.backups.values())

    def __len__(self) -> int:
        return len(self.backups)

    def __contains__(self, backup_id: object) -> bool:
        return backup_id in self.backups

    @property
    def ids(self) -> list[str]:
        return list(self.backups)

    def get(self, backup_id: str) -> Backup:
        try:
            return self.backups[backup_id]
        except KeyError:
            raise NotFound(
                f"backup {backup_id} of server {self.layout.server} is not in {self.layout.base}",
                hint="list the backups with `barman-cloud-plugin backup-list`",
            ) from None

    def keep_target(self, backup_id: str) -> str | None:
        if self.keeps is None:
            raise RuntimeError("keep annotations were not loaded with this catalog")
        return self.keeps.get(backup_id)

    def remove(self, backup_id: str) -> None:
        self.backups.pop(backup_id, None)
        if self.keeps is not None:
            self.keeps.pop(backup_id, None)

    def with_backups(self, backups: Mapping[str, Backup]) -> Catalog:
        return Catalog(self.layout, dict(backups), list(self.unreadable), self.keeps, list(self.without_info))


async def list_backup_ids(store: ReadableStore, layout: ServerLayout) -> list[str]:
    """The "directories" directly under ``base/`` (one delimited listing), sorted."""
    ids = []
    async for entry in store.list(layout.base, delimiter="/"):
        if isinstance(entry, CommonPrefix):
            name = entry.prefix[len(layout.base) :].rstrip("/")
            if name:
                ids.append(name)
    return sorted(ids)


async def read_backup_info(store: ReadableStore, layout: ServerLayout, backup_id: str) -> BackupInfo:
    """The parsed backup.info of one backup; NotFound when it has none."""
    key = layout.backup_info(backup_id)
    data = await read_all(store, key)
    return parse_backup_info(data, where=key)


async def read_backup(store: ReadableStore, layout: ServerLayout, backup_id: str) -> Backup:
    return Backup(backup_id, await read_backup_info(store, layout, backup_id))


async def load_catalog(
    store: ReadableStore,
    layout: ServerLayout,
    *,
    keeps: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> Catalog:
    """Every backup of ``layout.server``: one listing, then the backup.info files concurrently.

    With ``keeps`` the keep annotations are loaded too (one more listing, see :mod:`.keep`).
    """
    from barman_cloud.catalog.keep import list_keep_annotations

    keep_task = asyncio.ensure_future(list_keep_annotations(store, layout)) if keeps else None
    try:
        ids = await list_backup_ids(store, layout)
        limit = asyncio.Semaphore(max(1, concurrency))

        async def one(backup_id: str) -> Backup | Unreadable | None:
            async with limit:
                try:
                    return await read_backup(store, layout, backup_id)
                except NotFound:
                    return None
                except BarmanCloudError as error:
                    return Unreadable(backup_id, str(error))
                except Exception as error:  # a corrupt file must not take the catalog down
                    return Unreadable(backup_id, f"{type(error).__name__}: {error}")

        results = await asyncio.gather(*(one(backup_id) for backup_id in ids))
        keep_map = await keep_task if keep_task is not None else None
    except BaseException:
        if keep_task is not None:
            keep_task.cancel()
        raise
    backups = {r.backup_id: r for r in results if isinstance(r, Backup)}
    unreadable = [r for r in results if isinstance(r, Unreadable)]
    for item in unreadable:
        log.warning(
            "unable to read backup.info",
            extra={"backup_id": item.backup_id, "server": layout.server, "reason": item.reason},
        )
    without_info = [backup_id for backup_id, result in zip(ids, results, strict=True) if result is None]
    return Catalog(layout, backups, unreadable, keep_map, without_info)
