"""Where the WAL service archives to and restores from, per request.

CloudNativePG sends the Cluster JSON with every WAL call; which ObjectStore and server name apply
depends on it (and, for restores, on the Pod's role). The service asks a :class:`WalTargets` for
the archiver or restorer to use; implementations keep one Store (one connection pool), one
archive-ahead queue and one prefetch spool per destination and server name for the life of the
process, which is what lets the sidecar archive ahead and restore ahead at all.

:class:`StaticWalTargets` serves one ObjectStore and server name whatever the Cluster says: the
local quick start, benchmarks and tests. The Kubernetes-backed implementation reads the Cluster's
plugin parameters and the ObjectStore (issue #6).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from barman_cloud.config.command_args import compression_level
from barman_cloud.config.object_store import ObjectStore
from barman_cloud.config.secrets import ResolvedStore
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.archive_ahead import ArchiveAhead
from barman_cloud.wal.prefetch import Prefetcher, spool_key
from barman_cloud.wal.restore import WalRestorer


@dataclass
class WalTarget:
    """One destination and server name, with its long-lived archive-ahead queue and spool."""

    object_store: ObjectStore
    store: Store
    layout: ServerLayout
    spool: Path
    key: str
    _archivers: dict[Path, ArchiveAhead] = field(default_factory=dict)
    prefetcher: Prefetcher | None = None

    @property
    def max_parallel(self) -> int:
        return self.object_store.spec.configuration.wal.max_parallel

    def archive_ahead(self, pg_wal: Path) -> ArchiveAhead:
        """The queue for the pg_wal directory PostgreSQL archives from."""
        if pg_wal not in self._archivers:
            configuration = self.object_store.spec.configuration
            codec = compression.codec_named(configuration.wal.compression)
            level = compression_level(configuration.wal.archive_additional_command_args)
            settings = ArchiveSettings(
                codec=codec,
                level=compression.parse_level(codec, level) if codec else None,
                tags=dict(configuration.tags),
                history_tags=dict(configuration.history_tags),
            )
            archiver = WalArchiver(self.store, self.layout, settings)
            markers = self.spool / self.key / "archived"
            self._archivers[pg_wal] = ArchiveAhead(archiver, pg_wal, markers, self.max_parallel)
        return self._archivers[pg_wal]

    def restorer(self) -> WalRestorer:
        return WalRestorer(self.store, self.layout)

    def prefetch(self) -> Prefetcher:
        if self.prefetcher is None:
            # maxParallel keeps upstream's meaning (files fetched per call); at least a few ahead.
            depth = max(self.max_parallel, 4)
            self.prefetcher = Prefetcher(self.restorer(), self.spool, self.key, depth)
        return self.prefetcher

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._archivers.values()))
        if self.prefetcher is not None:
            await self.prefetcher.close()
        await self.store.close()


class WalTargets(Protocol):
    async def archive_target(self, cluster_definition: bytes) -> WalTarget: ...

    async def restore_target(self, cluster_definition: bytes) -> WalTarget: ...

    async def close(self) -> None: ...


def open_target(resolved: ResolvedStore, server_name: str, spool: Path) -> WalTarget:
    store = open_store(resolved.destination, resolved.credentials, resolved.options)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, server_name)
    return WalTarget(
        resolved.object_store, store, layout, spool, spool_key(resolved.destination, server_name)
    )


class StaticWalTargets:
    """Always the same ObjectStore and server name."""

    def __init__(self, resolved: ResolvedStore, server_name: str, spool: Path) -> None:
        self.target = open_target(resolved, server_name, spool)

    async def archive_target(self, cluster_definition: bytes) -> WalTarget:
        return self.target

    async def restore_target(self, cluster_definition: bytes) -> WalTarget:
        return self.target

    async def close(self) -> None:
        await self.target.close()
