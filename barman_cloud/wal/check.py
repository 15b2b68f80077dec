"""The empty-archive check (barman-cloud-check-wal-archive semantics), timeline-aware."""

from __future__ import annotations

from barman_cloud.errors import FailedPrecondition
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import ObjectInfo, ReadableStore


async def check_wal_archive(store: ReadableStore, layout: ServerLayout, timeline: int | None = None) -> None:
    """Fail if the destination already holds WAL for this server name (any WAL at all, or with
    ``timeline``: any WAL or history file of that timeline or a later one). Non-WAL keys are ignored.
    """
    async for entry in store.list(layout.wals):
        if not isinstance(entry, ObjectInfo):
            continue
        parsed = layout.parse_wal_key(entry.key)
        if parsed is None:
            continue
        wal = parsed[0]
        if timeline is None or wal.timeline >= timeline:
            scope = "" if timeline is None else f" on timeline {timeline} or later"
            raise FailedPrecondition(
                f"the WAL archive {layout.wals} is not empty{scope}: found {entry.key}",
                hint="another cluster already archives here; use a different serverName or destinationPath, "
                "or set the cnpg.io/skipEmptyWalArchiveCheck annotation if this is intended",
            )
